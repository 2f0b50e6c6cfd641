//! Unit tests of plugins against the host's real services, in-process, with no server and
//! no library: [`TestHost`] is the host's data layer, event outbox and host services over a
//! throwaway SQLite database; [`TestPlugin`] is one plugin (a crate built as `rlib` too,
//! using this crate as a dev-dependency) loaded into it.
//!
//! ```text
//! let host = TestHost::new();
//! let stealth = host.load::<GameStealth>(json!({"seed": 7})).unwrap();
//! let user = host.new_user();
//! let world = host.create_world(user, "Harbor");
//! let session = host.create_session(user, Some(world.id));
//! let response = stealth.post_json_as(user, "/game/stealth/pickpocket", &json!({...}));
//! assert_eq!(response.status, 200);
//! assert_eq!(host.get_session(user, session.id).unwrap().flags["stealth"]..., ...);
//! ```
//!
//! What runs is what runs in production: the host's migrations and the plugin's own (applied
//! confined by the database), the permission check and owner filtering of every host service
//! call, one unit of work per request (committed below 400, rolled back otherwise), the
//! outbox for events, and delivery to `on_event` in a unit of work per event, acting for the
//! event's user. What differs: the plugin is not opened from a library (the test links it),
//! its dependencies are not loaded or checked, it holds every permission its manifest asks
//! for, and events are delivered right after the call or emit that committed them, on the
//! test's thread, in id order, to the plugins loaded into the same `TestHost` (their
//! positions in the outbox kept in memory, not in `pixsim7_event_cursors`) — so a test
//! sees `on_event`'s effect as soon as the call returns.
//!
//! Everything runs on the `TestHost`'s own single-threaded runtime; its methods block, so
//! call them from a plain `#[test]`, not from inside [`TestHost::as_user`]'s future.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    path::PathBuf,
    rc::Rc,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Once,
    },
    time::Duration,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    sabi_types::RRef,
    std_types::{ROption, RResult, RSlice, RStr, Tuple2},
};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use async_ffi::FfiFuture;
use plugin_api::{
    abi::{
        FaultKind, FfiCaller, FfiRequest, FfiResponse, HostServicesHandle, PluginFault,
        RequestContextHandle, RequestHeaders_TO, ServiceError,
    },
    game::{NewNpc, NewSession, NewWorld, Npc, Session, World},
    sdk::{export::ExportedPlugin, panic::CatchPanic, testing::TestRuntime},
    Host, Manifest, Method, Response,
};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::{
    auth::{Caller, TokenKeys},
    client_address::ClientOrigin,
    config::{EventSettings, GameLimits},
    db::{
        migrate::{migrate, migrate_host},
        sql::query,
        unit_of_work::UnitOfWork,
        Database,
    },
    events::{EventBus, Position, StoredEvent, HOST_EMITTER},
    forward::{check_access, settle_unit, PluginHeaders, Refusal, COMMIT_FAILED},
    login_throttle::{LoginThrottle, LoginThrottleSettings},
    plugins::{
        lifecycle::{needs_own_data, pending_migrations, run_hook},
        services::{PluginServices, SharedServices},
    },
    request_context::{event_delivery_context, new_request_context},
};

/// Headers given as `name:value` lines, as a header map (lines that are not a valid header
/// are a mistake in the test, and panic).
fn header_map(lines: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in lines.lines().filter(|line| !line.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("a header line needs a colon: {line:?}"));
        map.append(
            HeaderName::from_bytes(name.trim().as_bytes()).expect("a valid header name"),
            HeaderValue::from_str(value.trim()).expect("a valid header value"),
        );
    }
    map
}

/// How long one hook or one `on_event` may take, as the host's default `hook_timeout_secs`.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Rounds of delivery (events caused by events) before the test host gives up.
const MAX_DELIVERY_ROUNDS: usize = 1000;

/// The identity [`TestHost::as_user`] and the typed helpers act under.
const SETUP_ID: &str = "test-host";

/// What the setup identity may do: the game state, for the user it acts for.
const SETUP_PERMISSIONS: &[&str] = &[
    "world:read",
    "world:write",
    "session:read",
    "session:write",
    "npc:read",
    "npc:write",
    "location:read",
    "location:write",
];

/// The host, in-process, over a throwaway SQLite database; see the module documentation.
///
/// The database is a file in a directory of its own under the system's temporary
/// directory, deleted when the `TestHost` (and every [`TestPlugin`] loaded into it) is
/// dropped. It is a file, not `:memory:`: the host's SQLite store reads on a pool of read
/// connections while one writer writes, and they can share only a file
/// (`Database::connect` refuses `:memory:` for that reason).
pub struct TestHost {
    inner: Rc<Inner>,
}

struct Inner {
    runtime: actix_web::rt::Runtime,
    shared: Arc<SharedServices>,
    /// The services `as_user` and the typed helpers use.
    setup: HostServicesHandle,
    /// The directory holding the database.
    dir: PathBuf,
    /// Every plugin loaded, in load order (event delivery goes through them in this order).
    plugins: RefCell<Vec<Rc<Loaded>>>,
    next_user: Cell<i64>,
    next_request: Cell<u64>,
}

/// One plugin loaded into a test host, as event delivery sees it.
struct Loaded {
    id: String,
    /// The subscriptions in force (empty without `event:subscribe`).
    patterns: Vec<String>,
    /// The id of the last event this plugin has been through.
    cursor: Cell<i64>,
    deliveries: RefCell<Vec<Delivery>>,
    on_event: Box<OnEvent>,
}

type HookFuture = FfiFuture<RResult<(), PluginFault>>;

/// A loaded plugin's `on_event`: source, topic, payload, the delivery's context.
type OnEvent = dyn Fn(&str, &str, Value, RequestContextHandle) -> HookFuture;

/// One event handed to a plugin's `on_event`, and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The event's id in the outbox.
    pub event_id: i64,
    /// Who emitted it (a plugin id, or `host`).
    pub source: String,
    /// Its topic.
    pub topic: String,
    /// `None` when the handler succeeded (and its writes committed); else why it failed
    /// (its writes were rolled back and the event skipped, as in production).
    pub error: Option<String>,
}

/// An event in the outbox (committed), as [`TestHost::outbox`] shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// Its id (commit order).
    pub id: i64,
    /// Who emitted it (a plugin id, or `host`).
    pub source: String,
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Value,
    /// The user on whose behalf it was emitted.
    pub user_id: Option<i64>,
}

impl Default for TestHost {
    fn default() -> Self {
        TestHost::new()
    }
}

impl TestHost {
    /// A fresh host: its own runtime, an empty database with the host's migrations applied,
    /// the event outbox, random token keys, the default game limits. Panics if any of it
    /// cannot be set up.
    ///
    /// Log lines (the host's, and the plugins' `log` macros) go to the test harness's
    /// captured output, filtered by `RUST_LOG` (default `info`), unless the test binary set
    /// up `tracing` itself.
    pub fn new() -> TestHost {
        install_test_logging();
        let runtime = actix_web::rt::Runtime::new().expect("a runtime for the test host");
        let dir = fresh_directory();
        let url = format!("sqlite://{}", dir.join("pixsim7.db").display());
        let database = runtime.block_on(async {
            let database = Database::connect(&url)
                .await
                .unwrap_or_else(|error| panic!("test database {url}: {error:#}"));
            migrate_host(&database)
                .await
                .unwrap_or_else(|error| panic!("host migrations: {error:#}"));
            database
        });
        let events = EventBus::new(
            &database,
            EventSettings {
                retention: Duration::from_secs(86_400),
                poll_interval: Duration::from_secs(1),
            },
            HOOK_TIMEOUT,
        );
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret).expect("randomness for the test host's token keys");
        let shared = Arc::new(SharedServices {
            database,
            events,
            keys: TokenKeys::new(&secret).expect("a 32-byte secret is long enough"),
            max_token_ttl: Duration::from_secs(7 * 86_400),
            blocking: Arc::new(Semaphore::new(4)),
            limits: GameLimits::default(),
            login_throttle: Arc::new(LoginThrottle::new(LoginThrottleSettings::default())),
        });
        let setup_permissions: Vec<String> =
            SETUP_PERMISSIONS.iter().map(|p| (*p).to_owned()).collect();
        let setup = PluginServices::handle_for(
            &Manifest::new(SETUP_ID, "Test host", "0.0.0"),
            &setup_permissions,
            shared.clone(),
        );
        TestHost {
            inner: Rc::new(Inner {
                runtime,
                shared,
                setup,
                dir,
                plugins: RefCell::new(Vec::new()),
                next_user: Cell::new(1),
                next_request: Cell::new(1),
            }),
        }
    }

    /// A new user id. Users are the sign-in plugin's business; to the host a user is the id
    /// in a verified token, so a fresh id is a new user with nothing of their own yet.
    pub fn new_user(&self) -> i64 {
        let id = self.inner.next_user.get();
        self.inner.next_user.set(id + 1);
        id
    }

    /// Loads plugin `P` with `config` (its `[plugins.<id>]` table as JSON), as the host
    /// would: validates its descriptor, grants every permission its manifest asks for,
    /// applies its migrations (confined by the database to its own tables), runs `on_load`
    /// and `on_enable` (each in a unit of work of its own) and announces `plugin:loaded`
    /// and `plugin:enabled`. Its subscriptions (with `event:subscribe`) start at the end of
    /// the outbox. Dependencies are neither loaded nor checked. The error says what failed.
    pub fn load<P: ExportedPlugin>(&self, config: Value) -> Result<TestPlugin<P>, String> {
        let runtime = TestRuntime::<P>::new();
        let descriptor = runtime.descriptor();
        descriptor.validate().map_err(|errors| errors.to_string())?;
        let manifest = &descriptor.manifest;
        let id = manifest.id.clone();
        if self.inner.plugins.borrow().iter().any(|p| p.id == id) {
            return Err(format!("plugin {id} is already loaded in this test host"));
        }
        let granted: Vec<String> = manifest
            .requested_permissions()
            .map(str::to_owned)
            .collect();
        let services = PluginServices::handle_for(manifest, &granted, self.inner.shared.clone());
        let subscribed =
            !manifest.subscriptions.is_empty() && granted.iter().any(|p| p == "event:subscribe");
        let shared = &self.inner.shared;
        let head = self.block_on(async {
            if needs_own_data(descriptor) {
                migrate(&shared.database, &id, &pending_migrations(descriptor))
                    .await
                    .map_err(|error| format!("migrations of {id} failed: {error:#}"))?;
            }
            // Subscribed before its hooks, as the host does: it hears its own announcements.
            let head = outbox_head(&shared.database).await?;
            run_in_unit(shared, runtime.load(config, services.clone()))
                .await
                .map_err(|reason| format!("on_load of {id} failed: {reason}"))?;
            let announcement =
                json!({"plugin_id": id, "name": manifest.name, "version": manifest.version});
            shared
                .events
                .emit_now(HOST_EMITTER, "plugin:loaded", &announcement)
                .await;
            run_in_unit(shared, runtime.enable())
                .await
                .map_err(|reason| format!("on_enable of {id} failed: {reason}"))?;
            shared
                .events
                .emit_now(HOST_EMITTER, "plugin:enabled", &json!({"plugin_id": id}))
                .await;
            Ok::<_, String>(head)
        })?;
        let loaded = Rc::new(Loaded {
            id,
            patterns: if subscribed {
                manifest.subscriptions.clone()
            } else {
                Vec::new()
            },
            cursor: Cell::new(head),
            deliveries: RefCell::new(Vec::new()),
            on_event: Box::new(move |source, topic, payload, context| {
                runtime.event(source, topic, payload, context)
            }),
        });
        self.inner.plugins.borrow_mut().push(loaded.clone());
        self.inner.deliver_pending();
        Ok(TestPlugin {
            host: self.inner.clone(),
            runtime,
            services,
            loaded,
        })
    }

    /// Runs `work` with host services acting for `user_id` (as a request of theirs would:
    /// what it creates is theirs, it sees only what is theirs), with every game permission
    /// (worlds, sessions, NPCs, locations). Everything `work` does is one unit of work:
    /// committed if it returns `Ok`, rolled back if `Err`. For setting up (or checking) the
    /// state a test needs:
    ///
    /// ```text
    /// let npc = host.as_user(user, |h| async move { h.create_npc(&new_npc).await }).unwrap();
    /// ```
    pub fn as_user<T, E, F, Fut>(&self, user_id: i64, work: F) -> Result<T, E>
    where
        F: FnOnce(Host) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let caller = Caller {
            user_id,
            roles: Vec::new(),
        };
        self.inner.scoped(&self.inner.setup, Some(caller), work)
    }

    /// Creates a world owned by `user_id`. Panics if the host refuses.
    #[track_caller]
    pub fn create_world(&self, user_id: i64, name: &str) -> World {
        let world = NewWorld {
            name: name.to_owned(),
            meta: None,
        };
        self.as_user(
            user_id,
            |host| async move { host.create_world(&world).await },
        )
        .unwrap_or_else(|error| panic!("create_world: {error}"))
    }

    /// Creates a session owned by `user_id`, in `world_id` (one of theirs) if given.
    /// Panics if the host refuses.
    #[track_caller]
    pub fn create_session(&self, user_id: i64, world_id: Option<i64>) -> Session {
        let session = NewSession {
            world_id,
            ..NewSession::default()
        };
        self.as_user(user_id, |host| async move {
            host.create_session(&session).await
        })
        .unwrap_or_else(|error| panic!("create_session: {error}"))
    }

    /// A session as `user_id` sees it: `NotFound` if it is not theirs.
    pub fn get_session(&self, user_id: i64, id: i64) -> Result<Session, ServiceError> {
        self.as_user(user_id, |host| async move { host.get_session(id).await })
    }

    /// Creates an NPC (world content: visible to every user) named `name`. Panics if the
    /// host refuses.
    #[track_caller]
    pub fn create_npc(&self, name: &str) -> Npc {
        let npc = NewNpc {
            name: name.to_owned(),
            world_id: None,
            home_location_id: None,
            personality: None,
        };
        self.inner
            .scoped(&self.inner.setup, None, |host| async move {
                host.create_npc(&npc).await
            })
            .unwrap_or_else(|error| panic!("create_npc: {error}"))
    }

    /// Emits an event as plugin (or `host`) `source` would while handling a request of
    /// `user_id` (`None`: outside any request): written to the outbox in a unit of work that
    /// commits, then delivered to the loaded plugins that subscribe to `topic`, before this
    /// returns. The emitter's manifest is not checked (`source` need not be loaded). Panics
    /// if the outbox cannot be written.
    pub fn emit_as(&self, user_id: Option<i64>, source: &str, topic: &str, payload: &Value) {
        let events = &self.inner.shared.events;
        self.block_on(async {
            let unit = UnitOfWork::new(&self.inner.shared.database);
            events
                .emit_in(&unit, source, user_id, topic, payload)
                .await
                .unwrap_or_else(|error| panic!("emit {topic}: {error}"));
            events
                .settle(&unit, true)
                .await
                .unwrap_or_else(|error| panic!("commit of {topic}: {error}"));
        });
        self.inner.deliver_pending();
    }

    /// Every committed event in the outbox, in order (the host's own `plugin:*`
    /// announcements included): what a test of an emitter checks.
    pub fn outbox(&self) -> Vec<OutboxEvent> {
        let events = self.block_on(async {
            let mut all = Vec::new();
            loop {
                let after = all.last().map_or(0, |e: &StoredEvent| e.position.event_id);
                let batch = read_after(&self.inner.shared.events, after).await;
                if batch.is_empty() {
                    return all;
                }
                all.extend(batch);
            }
        });
        events
            .into_iter()
            .map(|event| OutboxEvent {
                id: event.position.event_id,
                source: event.source,
                topic: event.topic,
                payload: serde_json::from_str(&event.payload).unwrap_or(Value::Null),
                user_id: event.user_id,
            })
            .collect()
    }

    /// Runs `future` on the test host's runtime (for what the helpers do not cover, e.g.
    /// reading the database through [`TestHost::database`]).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.inner.runtime.block_on(future)
    }

    /// The test host's database.
    pub fn database(&self) -> &Database {
        &self.inner.shared.database
    }
}

impl Inner {
    /// Runs `work` with a `Host` over `services` acting for `caller`, in a unit of work of its
    /// own settled by its outcome; then delivers the events it committed.
    fn scoped<T, E, F, Fut>(
        &self,
        services: &HostServicesHandle,
        caller: Option<Caller>,
        work: F,
    ) -> Result<T, E>
    where
        F: FnOnce(Host) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let request_id = self.request_id();
        let (state, context) = new_request_context(
            &request_id,
            caller,
            ClientOrigin::default(),
            &self.shared.database,
        );
        let host = Host::for_tests(services.clone(), Some(context));
        let outcome = self.runtime.block_on(async {
            let outcome = work(host).await;
            self.shared
                .events
                .settle(&state.unit, outcome.is_ok())
                .await
                .unwrap_or_else(|error| panic!("the test's unit of work did not commit: {error}"));
            outcome
        });
        self.deliver_pending();
        outcome
    }

    fn request_id(&self) -> HeaderValue {
        let n = self.next_request.get();
        self.next_request.set(n + 1);
        HeaderValue::from_str(&format!("test-{n}")).expect("a valid header value")
    }

    /// Hands every committed event the loaded subscribers have not been through yet to those
    /// whose subscriptions match it, in id order, until none is left (events emitted by
    /// handlers included). Each delivery is a unit of work of its own, acting for the event's
    /// user: committed if the handler succeeds, rolled back (and the failure recorded) if
    /// not.
    fn deliver_pending(&self) {
        for _ in 0..MAX_DELIVERY_ROUNDS {
            let subscribers: Vec<Rc<Loaded>> = self
                .plugins
                .borrow()
                .iter()
                .filter(|p| !p.patterns.is_empty())
                .cloned()
                .collect();
            let Some(after) = subscribers.iter().map(|p| p.cursor.get()).min() else {
                return;
            };
            let delivered = self.runtime.block_on(async {
                let events = read_after(&self.shared.events, after).await;
                for event in &events {
                    let id = event.position.event_id;
                    for subscriber in &subscribers {
                        if subscriber.cursor.get() >= id {
                            continue;
                        }
                        if subscriber.wants(&event.topic) {
                            self.deliver(subscriber, event).await;
                        }
                        subscriber.cursor.set(id);
                    }
                }
                !events.is_empty()
            });
            if !delivered {
                return;
            }
        }
        panic!("events kept causing events for {MAX_DELIVERY_ROUNDS} rounds; is a plugin answering its own events?");
    }

    async fn deliver(&self, subscriber: &Loaded, event: &StoredEvent) {
        let events = &self.shared.events;
        let unit = Arc::new(UnitOfWork::new(&self.shared.database));
        let outcome = match serde_json::from_str::<Value>(&event.payload) {
            Err(error) => Err(format!("event payload is not JSON: {error}")),
            Ok(payload) => {
                let id = event.position.event_id;
                let context = event_delivery_context(id, event.user_id, unit.clone());
                let hook = (subscriber.on_event)(&event.source, &event.topic, payload, context);
                unit.run_ambient(run_hook(hook, HOOK_TIMEOUT)).await
            }
        };
        // Committed or rolled back, counted and logged as the host's delivery does.
        let outcome = match events
            .settle_delivery(&unit, &subscriber.id, event, outcome.clone())
            .await
        {
            Ok(_) => outcome,
            Err(error) => Err(format!("its changes could not be committed: {error}")),
        };
        subscriber.deliveries.borrow_mut().push(Delivery {
            event_id: event.position.event_id,
            source: event.source.clone(),
            topic: event.topic.clone(),
            error: outcome.err(),
        });
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Not while a failed test unwinds (perhaps out of this runtime): a second panic
        // would abort the test binary. The files go either way.
        if !std::thread::panicking() {
            let database = self.shared.database.clone();
            self.runtime.block_on(async move { database.close().await });
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Loaded {
    fn wants(&self, topic: &str) -> bool {
        self.patterns
            .iter()
            .any(|pattern| plugin_api::events::matches(pattern, topic))
    }
}

/// A plugin loaded into a [`TestHost`]: call its routes as a user, see what `on_event` did.
pub struct TestPlugin<P: ExportedPlugin> {
    host: Rc<Inner>,
    runtime: TestRuntime<P>,
    /// The services the host built for it (its id, its permissions).
    services: HostServicesHandle,
    loaded: Rc<Loaded>,
}

impl<P: ExportedPlugin> TestPlugin<P> {
    /// The plugin's id.
    pub fn id(&self) -> &str {
        &self.loaded.id
    }

    /// Sends a request as the host would after verifying `caller`'s token (`None`: no
    /// token): `path` is below the manifest prefix and may carry `?query`. The route's access
    /// is enforced first (401 without a caller, 403 without the `admin` role), a path no
    /// route has answers 404 (405 for another method), a plugin failure or panic 500. The
    /// request's unit of work commits if the answer is below 400 and rolls back otherwise;
    /// then the events it committed are delivered, before this returns.
    pub fn call_as(
        &self,
        caller: Option<Caller>,
        method: Method,
        path: &str,
        body: &[u8],
    ) -> Response {
        self.send(caller, method, path, "", body)
    }

    /// [`TestPlugin::call_as`] for user `user_id` (no roles), or anonymous.
    pub fn call(&self, user_id: Option<i64>, method: Method, path: &str, body: &[u8]) -> Response {
        self.call_as(user_id.map(user), method, path, body)
    }

    /// `GET path`, anonymous.
    pub fn get(&self, path: &str) -> Response {
        self.call(None, Method::Get, path, b"")
    }

    /// `POST path` with a JSON body, anonymous.
    pub fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send_json(None, Method::Post, path, body)
    }

    /// `GET path` as `user_id`.
    pub fn get_as(&self, user_id: i64, path: &str) -> Response {
        self.call(Some(user_id), Method::Get, path, b"")
    }

    /// `POST path` with a JSON body as `user_id`.
    pub fn post_json_as(&self, user_id: i64, path: &str, body: &Value) -> Response {
        self.send_json(Some(user(user_id)), Method::Post, path, body)
    }

    /// `PUT path` with a JSON body as `user_id`.
    pub fn put_json_as(&self, user_id: i64, path: &str, body: &Value) -> Response {
        self.send_json(Some(user(user_id)), Method::Put, path, body)
    }

    /// `PATCH path` with a JSON body as `user_id`.
    pub fn patch_json_as(&self, user_id: i64, path: &str, body: &Value) -> Response {
        self.send_json(Some(user(user_id)), Method::Patch, path, body)
    }

    /// `DELETE path` as `user_id`.
    pub fn delete_as(&self, user_id: i64, path: &str) -> Response {
        self.call(Some(user_id), Method::Delete, path, b"")
    }

    /// Runs `work` with this plugin's own services (its id, its permissions, its tables)
    /// acting for `user_id`, as a handler of that user's request would, in a unit of work
    /// committed on `Ok`: to check what the plugin stored, e.g. with `db_query`.
    pub fn as_user<T, E, F, Fut>(&self, user_id: i64, work: F) -> Result<T, E>
    where
        F: FnOnce(Host) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.host.scoped(&self.services, Some(user(user_id)), work)
    }

    /// Every event handed to this plugin's `on_event` so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.loaded.deliveries.borrow().clone()
    }

    /// The deliveries whose handler failed (an error, a panic, a timeout, a commit that
    /// failed): their writes were rolled back.
    pub fn event_failures(&self) -> Vec<Delivery> {
        self.loaded
            .deliveries
            .borrow()
            .iter()
            .filter(|d| d.error.is_some())
            .cloned()
            .collect()
    }

    /// Runs `on_disable` (in a unit of work of its own), as at shutdown. The plugin keeps
    /// answering calls and events afterwards; a test checks what the hook did.
    pub fn disable(&self) -> Result<(), String> {
        let shared = &self.host.shared;
        self.host
            .runtime
            .block_on(run_in_unit(shared, self.runtime.disable()))
    }

    fn send_json(
        &self,
        caller: Option<Caller>,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Response {
        let body = body.to_string();
        self.send(
            caller,
            method,
            path,
            "content-type:application/json\n",
            body.as_bytes(),
        )
    }

    fn send(
        &self,
        caller: Option<Caller>,
        method: Method,
        path_and_query: &str,
        headers: &str,
        body: &[u8],
    ) -> Response {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let Some((index, params)) = self.runtime.match_route(method, path) else {
            let allowed = self.runtime.methods_for(path);
            if allowed.is_empty() {
                return detail(404, "Not Found");
            }
            let allow: Vec<String> = allowed.iter().map(ToString::to_string).collect();
            return detail(405, "Method Not Allowed").with_header("allow", allow.join(", "));
        };
        let descriptor = self.runtime.descriptor();
        match check_access(descriptor.routes[index as usize].access, caller.as_ref()) {
            Ok(()) => {}
            Err(Refusal::NotAuthenticated) => {
                return detail(401, "Not authenticated").with_header("www-authenticate", "Bearer")
            }
            Err(Refusal::Forbidden) => return detail(403, "Not enough permissions"),
        }
        let request_id = self.host.request_id();
        let (state, context) = new_request_context(
            &request_id,
            caller.clone(),
            ClientOrigin::default(),
            &self.host.shared.database,
        );
        let full_path = format!("{}{path}", descriptor.manifest.prefix);
        let path_params: Vec<Tuple2<RStr<'_>, RStr<'_>>> = params
            .iter()
            .map(|(name, value)| Tuple2(RStr::from_str(name), RStr::from_str(value)))
            .collect();
        let header_map = header_map(headers);
        let plugin_headers = PluginHeaders(&header_map);
        let request = FfiRequest {
            method,
            path: RStr::from_str(&full_path),
            path_params: RSlice::from_slice(&path_params),
            query: RStr::from_str(query),
            headers: RequestHeaders_TO::from_ptr(RRef::new(&plugin_headers), TD_Opaque),
            body: RSlice::from_slice(body),
            context: &context,
            caller: match &caller {
                Some(caller) => ROption::RSome(FfiCaller {
                    user_id: caller.user_id,
                    roles: RSlice::from_slice(&caller.roles),
                }),
                None => ROption::RNone,
            },
        };
        let id = self.loaded.id.as_str();
        let request_id = request_id.to_str().unwrap_or_default().to_owned();
        let events = &self.host.shared.events;
        let response = self.host.runtime.block_on(async {
            let answer = CatchPanic::new(self.runtime.handle(index, request)).await;
            let response = match answer {
                Ok(RResult::ROk(response)) => converted(id, response, &request_id),
                Ok(RResult::RErr(fault)) => {
                    let what = match fault.kind {
                        FaultKind::Panic => "panicked",
                        _ => "failed",
                    };
                    tracing::error!(
                        plugin = id,
                        request_id,
                        "plugin {id} {what} while handling {method} {path}: {}",
                        fault.message
                    );
                    internal_error(id, &request_id)
                }
                Err(panic) => {
                    tracing::error!(
                        plugin = id,
                        request_id,
                        "plugin {id} panicked while handling {method} {path}: {panic}"
                    );
                    internal_error(id, &request_id)
                }
            };
            // As the host's request path ends every request's unit of work.
            if settle_unit(events, &state.unit, response.status, id, &request_id).await {
                response
            } else {
                detail(503, COMMIT_FAILED)
            }
        });
        self.host.deliver_pending();
        response.with_header("x-request-id", request_id)
    }
}

/// A caller with user id `user_id` and no roles.
fn user(user_id: i64) -> Caller {
    Caller {
        user_id,
        roles: Vec::new(),
    }
}

/// The plugin's answer as a [`Response`]; an invalid status is a 500, as in the host.
fn converted(plugin_id: &str, response: FfiResponse, request_id: &str) -> Response {
    if !(100..=999).contains(&response.status) {
        tracing::error!(
            plugin = plugin_id,
            request_id,
            "plugin {plugin_id} answered with invalid status {}",
            response.status
        );
        return internal_error(plugin_id, request_id);
    }
    Response {
        status: response.status,
        headers: response
            .headers
            .into_iter()
            .map(|Tuple2(name, value)| (name.to_string().into(), value.to_string().into()))
            .collect(),
        body: response.body.into_vec(),
    }
}

/// The host's `{"detail": ...}` error body.
fn detail(status: u16, detail: &str) -> Response {
    Response::json(status, &json!({ "detail": detail }))
}

/// The host's 500 for a plugin that failed or panicked.
fn internal_error(plugin_id: &str, request_id: &str) -> Response {
    Response::json(
        500,
        &json!({
            "detail": format!("internal error in plugin {plugin_id}"),
            "request_id": request_id,
        }),
    )
}

/// Runs one lifecycle hook in a unit of work of its own, as the host does.
async fn run_in_unit(shared: &SharedServices, hook: HookFuture) -> Result<(), String> {
    let unit = Arc::new(UnitOfWork::new(&shared.database));
    let outcome = unit.run_ambient(run_hook(hook, HOOK_TIMEOUT)).await;
    match shared.events.settle(&unit, outcome.is_ok()).await {
        Ok(_) => outcome,
        Err(error) => Err(format!("its changes could not be committed: {error}")),
    }
}

/// The id of the last event in the outbox (0 when empty).
async fn outbox_head(database: &Database) -> Result<i64, String> {
    let mut connection = database
        .read_connection()
        .await
        .map_err(|e| e.to_string())?;
    let row = query("SELECT id FROM pixsim7_events ORDER BY id DESC LIMIT 1")
        .fetch_optional(&mut connection.conn())
        .await
        .map_err(|e| e.to_string())?;
    match row {
        Some(row) => row.try_get(0usize).map_err(|e| e.to_string()),
        None => Ok(0),
    }
}

/// The next batch of committed events after id `after` (the test host is SQLite: one
/// writer, so id order is commit order).
async fn read_after(events: &EventBus, after: i64) -> Vec<StoredEvent> {
    events
        .read_after(Position {
            tx_id: 0,
            event_id: after,
        })
        .await
        .unwrap_or_else(|error| panic!("reading the outbox: {error}"))
}

/// A new, empty directory under the system's temporary directory.
fn fresh_directory() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "pixsim7-test-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
    dir
}

/// Sends `tracing` (and, through it, the plugins' `log` lines) to the test harness's captured
/// output, once per process and only if nothing else set a subscriber.
fn install_test_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if tracing::dispatcher::has_been_set() {
            return;
        }
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_test_writer()
            .try_init();
    });
}

#[cfg(test)]
mod tests {
    use plugin_api::{
        game::{DocumentChange, SessionPatch},
        prelude::*,
    };

    use super::TestHost;

    /// Writes a flag and announces it, answering the status the query asks for; counts the
    /// announcements it hears, failing on those that ask it to.
    struct Probe;

    impl plugin_api::sdk::export::ExportedPlugin for Probe {
        fn default_constructor() -> Option<fn() -> Probe> {
            None
        }
    }

    impl Plugin for Probe {
        const MANIFEST: PluginManifest = PluginManifest::new("probe", "Probe", "1.0.0")
            .permissions(&[
                "session:read",
                "session:write",
                "event:emit",
                "event:subscribe",
            ])
            .emits(&["probe:marked"])
            .subscribes(&["probe:marked", "plugin:*"]);

        const ROUTES: &'static [Route<Self>] = &[
            Route::post("/probe/{session_id}", "Marks a session", mark),
            Route::get(
                "/probe/admin",
                "Admins only",
                |_: &Probe, _: Request| async { "yes" },
            )
            .admin(),
        ];

        async fn on_load(_: LoadContext) -> Result<Self, PluginError> {
            Ok(Probe)
        }

        async fn on_event(&self, event: Event) -> Result<(), PluginError> {
            if event.topic != "probe:marked" {
                return Ok(());
            }
            let session_id = event.payload["session_id"].as_i64().unwrap_or_default();
            let heard = DocumentChange::Add {
                path: vec!["heard".into()],
                by: 1.0,
                min: None,
                max: None,
                default: Some(0.0),
            };
            let patch = SessionPatch {
                flags: vec![heard],
                relationships: Vec::new(),
                expected_version: None,
            };
            event
                .host()
                .patch_session(session_id, &patch)
                .await
                .map_err(|e| PluginError::new(e.to_string()))?;
            if event.payload["fail"] == true {
                return Err(PluginError::new("asked to fail"));
            }
            Ok(())
        }
    }

    async fn mark(_: &Probe, request: Request<'_>) -> Result<Response, ApiError> {
        let session_id: i64 = request.param_as("session_id")?;
        let status: u16 = request.query_as("status")?.unwrap_or(200);
        let fail = request.query("fail").is_some();
        let patch = SessionPatch {
            flags: vec![DocumentChange::Set {
                path: vec!["marked".into()],
                value: json!(true),
            }],
            relationships: Vec::new(),
            expected_version: None,
        };
        request.host().patch_session(session_id, &patch).await?;
        let payload = json!({"session_id": session_id, "fail": fail});
        request.host().emit("probe:marked", &payload).await?;
        if status == 500 {
            panic!("asked to panic");
        }
        Ok(Response::json(status, &json!({"marked": session_id})))
    }

    #[test]
    fn requests_commit_below_400_and_events_reach_on_event() {
        let host = TestHost::new();
        let probe = host.load::<Probe>(json!({})).unwrap();
        let user = host.new_user();
        let session = host.create_session(user, None);
        let path = format!("/probe/{}", session.id);

        let answer = probe.post_json_as(user, &path, &json!({}));
        assert_eq!(answer.status, 200);
        let saved = host.get_session(user, session.id).unwrap();
        assert_eq!(saved.flags, json!({"marked": true, "heard": 1}));
        let topics: Vec<String> = probe.deliveries().into_iter().map(|d| d.topic).collect();
        assert_eq!(topics, ["plugin:loaded", "plugin:enabled", "probe:marked"]);

        // A 4xx answer and a panic keep nothing: no flag, no event.
        let fresh = host.create_session(user, None);
        let path = format!("/probe/{}", fresh.id);
        assert_eq!(
            probe
                .post_json_as(user, &format!("{path}?status=409"), &json!({}))
                .status,
            409
        );
        let panicked = probe.post_json_as(user, &format!("{path}?status=500"), &json!({}));
        assert_eq!(panicked.status, 500);
        assert_eq!(
            panicked.json_body()["detail"],
            "internal error in plugin probe"
        );
        assert_eq!(host.get_session(user, fresh.id).unwrap().flags, json!({}));
        assert_eq!(probe.deliveries().len(), 3);

        // A handler that fails has its writes rolled back and the failure recorded.
        assert_eq!(
            probe
                .post_json_as(user, &format!("{path}?fail"), &json!({}))
                .status,
            200
        );
        assert_eq!(
            host.get_session(user, fresh.id).unwrap().flags,
            json!({"marked": true})
        );
        let failures = probe.event_failures();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].error.as_deref(), Some("asked to fail"));

        // Another user's request finds no session; access is checked before the plugin runs.
        assert_eq!(
            probe
                .post_json_as(host.new_user(), &path, &json!({}))
                .status,
            404
        );
        assert_eq!(probe.post_json(&path, &json!({})).status, 401);
        assert_eq!(probe.get_as(user, "/probe/admin").status, 403);
        let admin = caller_with_role(user, "admin");
        assert_eq!(
            probe
                .call_as(Some(admin), Method::Get, "/probe/admin", b"")
                .status,
            200
        );
        assert_eq!(probe.get_as(user, &path).status, 405);
        assert_eq!(probe.get_as(user, "/nothing").status, 404);
    }

    fn caller_with_role(user_id: i64, role: &str) -> crate::auth::Caller {
        crate::auth::Caller {
            user_id,
            roles: vec![role.into()],
        }
    }

    #[test]
    fn a_plugin_loads_once_per_host_and_each_host_has_a_database_of_its_own() {
        let host = TestHost::new();
        host.load::<Probe>(json!({})).unwrap();
        let again = host.load::<Probe>(json!({})).err().unwrap();
        assert!(again.contains("already loaded"), "{again}");
        // Each host is a database of its own.
        let other = TestHost::new();
        let user = other.new_user();
        assert_eq!(other.create_session(user, None).id, 1);
        assert_eq!(host.create_session(user, None).id, 1);
    }
}

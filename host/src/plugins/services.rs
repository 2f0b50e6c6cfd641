//! The host services handed to each plugin at `on_load`: one object per plugin, bound to its
//! id and its granted permissions by the host, so a plugin can only act (and log) under its
//! own name and within its grant. Denials are refused before anything runs; denials and every
//! privileged action are written to the audit log.

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RStr, RString, RVec},
};
use async_ffi::{FfiFuture, FutureExt};
use plugin_api::{
    abi::{
        BlockingJobBox, HostServices, HostServicesHandle, HostServices_TO, LogLevel,
        RequestContextHandle, ServiceError, ServiceErrorKind, ServiceResult,
    },
    game::{
        calls::{Emit, IssueToken, IssuedToken},
        operation, ops, Operation,
    },
};
use tokio::sync::Semaphore;
use tracing::level_filters::LevelFilter;

use crate::{
    auth::TokenKeys,
    config::GameLimits,
    db::{unit_of_work::UnitOfWork, Database},
    events::EventBus,
    game::{self, Scope},
    login_throttle::LoginThrottle,
    request_context::{request_state, SharedRequestState},
};

/// The tracing target of every log line a plugin writes.
pub const PLUGIN_LOG_TARGET: &str = "pixsim7::plugin";

/// The tracing target of permission decisions, so operators can route them.
pub const AUDIT_TARGET: &str = "pixsim7::audit";

/// Permissions whose every use is written to the audit log, not only denials.
const PRIVILEGED: &[&str] = &["session:write", "db:write", "event:emit", "auth:issue"];

/// Lets a plugin acting as itself (outside any request) read every user's worlds and
/// sessions.
pub const SYSTEM_READ: &str = "system:read";
/// Lets a plugin acting as itself change every user's worlds and sessions (and read them).
pub const SYSTEM_WRITE: &str = "system:write";

/// Services bound to one plugin.
#[derive(Clone)]
pub struct PluginServices {
    inner: Arc<Bound>,
}

struct Bound {
    plugin_id: String,
    granted: BTreeSet<String>,
    /// The manifest's `emits`: the topics this plugin may publish.
    emits: Vec<String>,
    shared: Arc<SharedServices>,
    warned_about_logging: AtomicBool,
}

/// What every plugin's services share: the database, the event bus, the token keys and the
/// bound on blocking work.
pub struct SharedServices {
    /// The game database.
    pub database: Database,
    /// The event bus.
    pub events: Arc<EventBus>,
    /// Signs the tokens `auth.issue_token` mints.
    pub keys: TokenKeys,
    /// The longest lifetime a minted token may have.
    pub max_token_ttl: Duration,
    /// Permits for blocking jobs running at once.
    pub blocking: Arc<Semaphore>,
    /// Bounds on game state documents.
    pub limits: GameLimits,
    /// Failed sign-ins per username and address (`auth.login_attempt`, `auth.login_succeeded`).
    pub login_throttle: Arc<LoginThrottle>,
}

impl PluginServices {
    /// The services object for plugin `plugin_id` holding `granted` permissions, ready to
    /// cross the boundary.
    pub fn handle_for(
        manifest: &plugin_api::Manifest,
        granted: &[String],
        shared: Arc<SharedServices>,
    ) -> HostServicesHandle {
        let services = PluginServices {
            inner: Arc::new(Bound {
                plugin_id: manifest.id.clone(),
                granted: granted.iter().cloned().collect(),
                emits: manifest.emits.clone(),
                shared,
                warned_about_logging: AtomicBool::new(false),
            }),
        };
        HostServices_TO::from_ptr(RArc::new(services), TD_Opaque)
    }
}

impl Bound {
    fn permits(&self, permission: &str) -> bool {
        self.granted.contains(permission)
    }

    async fn dispatch(
        &self,
        request: Option<SharedRequestState>,
        op: Operation,
        payload: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        let plugin = self.plugin_id.as_str();
        let request_id = request.as_ref().map(|r| r.request_id());
        let user_id = request
            .as_ref()
            .and_then(|r| r.caller.as_ref())
            .map(|c| c.user_id);
        if !self.permits(op.permission) {
            tracing::warn!(
                target: AUDIT_TARGET,
                plugin,
                permission = op.permission,
                operation = op.name,
                outcome = "denied",
                request_id,
                user_id,
                "plugin {plugin} was refused {}: it lacks permission {}",
                op.name,
                op.permission
            );
            return Err(game::service_error(
                ServiceErrorKind::PermissionDenied,
                format!(
                    "plugin {plugin} lacks permission {} needed for {}",
                    op.permission, op.name
                ),
            ));
        }
        let scope = match &request {
            Some(request) => Scope::Caller(request.caller.as_ref().map(|c| c.user_id)),
            None => self.own_scope(op),
        };
        // The unit this call joins: the request's; else the event delivery's or hook's in
        // progress; else (a call outside all of them) one of its own, ended with the call.
        let joined = match &request {
            Some(request) => Joined::Request(request.clone()),
            None => match UnitOfWork::ambient() {
                Some(unit) => Joined::Ambient(unit),
                None => Joined::Own(UnitOfWork::new(&self.shared.database)),
            },
        };
        let unit = joined.unit();
        let result = if op == ops::EVENT_EMIT {
            self.emit(unit, scope.user_id(), payload).await
        } else if op == ops::AUTH_ISSUE_TOKEN {
            self.issue_token(payload)
        } else if op == ops::AUTH_LOGIN_ATTEMPT {
            let throttle = &self.shared.login_throttle;
            throttle.serve_attempt(plugin, request.as_deref(), payload)
        } else if op == ops::AUTH_LOGIN_SUCCEEDED {
            let throttle = &self.shared.login_throttle;
            throttle.serve_succeeded(request.as_deref(), payload)
        } else {
            game::execute(unit, &self.shared.limits, plugin, scope, op, payload).await
        };
        let result = match &joined {
            Joined::Own(own) => match self.shared.events.settle(own, result.is_ok()).await {
                Ok(_) => result,
                Err(error) => Err(game::database_error(error)),
            },
            Joined::Request(_) | Joined::Ambient(_) => result,
        };
        if PRIVILEGED.contains(&op.permission) || scope == Scope::System {
            let outcome = if result.is_ok() { "allowed" } else { "failed" };
            let permission = op.permission;
            let system = (scope == Scope::System).then(|| self.system_permission(op));
            let with = match system {
                Some(system) => format!("{permission} and {system}"),
                None => permission.to_owned(),
            };
            tracing::info!(
                target: AUDIT_TARGET,
                plugin,
                permission,
                system,
                operation = op.name,
                outcome,
                request_id,
                user_id,
                "plugin {plugin} used {} with {with} ({outcome})",
                op.name
            );
        }
        result
    }

    /// The permission that would let `op` see every user's data outside a request.
    fn system_permission(&self, op: plugin_api::game::Operation) -> &'static str {
        if game::writes(op) {
            SYSTEM_WRITE
        } else if self.permits(SYSTEM_READ) {
            SYSTEM_READ
        } else {
            SYSTEM_WRITE
        }
    }

    /// The scope of a call the plugin makes as itself: everything with the system permission
    /// the call needs (`system:write` covers reads too), else no user's data. Only calls
    /// about owned data (worlds, sessions, and the caller views of a plugin's SQL) can differ.
    fn own_scope(&self, op: plugin_api::game::Operation) -> Scope {
        let owned = ["world.", "session.", "db."]
            .iter()
            .any(|family| op.name.starts_with(family));
        if !owned {
            return Scope::Plugin;
        }
        let permitted = if game::writes(op) {
            self.permits(SYSTEM_WRITE)
        } else {
            self.permits(SYSTEM_READ) || self.permits(SYSTEM_WRITE)
        };
        if permitted {
            Scope::System
        } else {
            Scope::Plugin
        }
    }

    /// `auth.issue_token`: a token signed with the host's secret, lifetime capped.
    fn issue_token(&self, payload: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let call: IssueToken = serde_json::from_slice(payload).map_err(|e| {
            game::service_error(ServiceErrorKind::BadCall, format!("invalid payload: {e}"))
        })?;
        let ttl = Duration::from_secs(call.ttl_secs.max(1)).min(self.shared.max_token_ttl);
        let issued = IssuedToken {
            access_token: self.shared.keys.issue(call.user_id, &call.roles, ttl),
            expires_in: ttl.as_secs(),
        };
        Ok(serde_json::to_vec(&issued).expect("a token serializes"))
    }

    /// `event.emit`: written to the outbox in the caller's unit of work, so it is delivered
    /// only if that unit commits; on behalf of `user_id` (the caller), whom its subscribers
    /// then act for.
    async fn emit(
        &self,
        unit: &UnitOfWork,
        user_id: Option<i64>,
        payload: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        let bad_call = |message: String| game::service_error(ServiceErrorKind::BadCall, message);
        let emit: Emit = serde_json::from_slice(payload)
            .map_err(|e| bad_call(format!("invalid payload: {e}")))?;
        plugin_api::events::validate_topic(&emit.topic).map_err(bad_call)?;
        if !self
            .emits
            .iter()
            .any(|pattern| plugin_api::events::matches(pattern, &emit.topic))
        {
            return Err(bad_call(format!(
                "plugin {} may not emit {}: its manifest's emits declares [{}]",
                self.plugin_id,
                emit.topic,
                self.emits.join(", ")
            )));
        }
        if plugin_api::events::is_host_topic(&emit.topic) {
            return Err(bad_call(format!(
                "topic {} is reserved for the host",
                emit.topic
            )));
        }
        self.shared
            .events
            .emit_in(unit, &self.plugin_id, user_id, &emit.topic, &emit.payload)
            .await
            .map_err(game::unit_error)?;
        Ok(b"null".to_vec())
    }
}

impl HostServices for PluginServices {
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        let plugin = self.inner.plugin_id.as_str();
        if !self.inner.permits("log:emit") {
            if !self
                .inner
                .warned_about_logging
                .swap(true, Ordering::Relaxed)
            {
                tracing::warn!(
                    target: AUDIT_TARGET,
                    plugin,
                    permission = "log:emit",
                    operation = "log",
                    outcome = "denied",
                    "plugin {plugin} writes log lines but lacks permission log:emit; its lines are dropped"
                );
            }
            return;
        }
        let module = target.as_str();
        let message = message.as_str();
        match level {
            LogLevel::Error => {
                tracing::error!(target: PLUGIN_LOG_TARGET, plugin, module, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: PLUGIN_LOG_TARGET, plugin, module, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: PLUGIN_LOG_TARGET, plugin, module, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: PLUGIN_LOG_TARGET, plugin, module, "{message}")
            }
            LogLevel::Trace => {
                tracing::trace!(target: PLUGIN_LOG_TARGET, plugin, module, "{message}")
            }
        }
    }

    fn run_blocking(&self, mut job: BlockingJobBox) -> FfiFuture<RResult<(), RString>> {
        let permits = self.inner.shared.blocking.clone();
        async move {
            // Bounded: a burst of logins waits for a permit instead of overloading the host.
            let Ok(permit) = permits.acquire_owned().await else {
                return RResult::RErr("the host is shutting down".into());
            };
            let (done, outcome) = tokio::sync::oneshot::channel();
            // A thread of its own, not tokio's shared blocking pool: it lowers its priority
            // for good, and it holds the permit until the work ends, even if the request
            // that asked for it is dropped (a client that disconnects mid-login must not let
            // hashes pile up beyond the bound).
            let spawned = std::thread::Builder::new()
                .name("pixsim7-blocking".into())
                .spawn(move || {
                    let _permit = permit;
                    lower_thread_priority();
                    let _ = done.send(job.run());
                });
            if let Err(error) = spawned {
                return RResult::RErr(
                    format!("cannot start a thread for blocking work: {error}").into(),
                );
            }
            outcome.await.unwrap_or_else(|_| {
                RResult::RErr("the blocking job ended without an answer".into())
            })
        }
        .into_ffi()
    }

    fn call(
        &self,
        context: ROption<RequestContextHandle>,
        name: RStr<'_>,
        version: u32,
        payload: RVec<u8>,
    ) -> FfiFuture<ServiceResult> {
        let Some(op) = operation(name.as_str(), version) else {
            let error = not_supported(name.as_str(), version);
            return async move { RResult::RErr(error) }.into_ffi();
        };
        let inner = self.inner.clone();
        // No context: the call comes from a hook or an event handler (system scope). A
        // context the host did not make is refused, never mistaken for "no request".
        let request = match context.as_ref().into_option().map(request_state) {
            None => None,
            Some(Some(state)) => Some(state),
            Some(None) => {
                let error = game::service_error(
                    ServiceErrorKind::BadCall,
                    "the request context was not made by this host",
                );
                return async move { RResult::RErr(error) }.into_ffi();
            }
        };
        async move {
            match inner.dispatch(request, op, &payload).await {
                Ok(bytes) => RResult::ROk(RVec::from(bytes)),
                Err(error) => RResult::RErr(error),
            }
        }
        .into_ffi()
    }

    fn supports(&self, name: RStr<'_>, version: u32) -> bool {
        operation(name.as_str(), version).is_some()
    }
}

/// The answer to an operation (or a version of one) this host does not offer: the plugin
/// was written for another host, and says so in its own log.
fn not_supported(name: &str, version: u32) -> ServiceError {
    let offered: Vec<String> = ops::ALL
        .iter()
        .filter(|op| op.name == name)
        .map(|op| format!("version {}", op.version))
        .collect();
    let detail = if offered.is_empty() {
        format!("this host does not offer the operation {name:?}")
    } else {
        format!(
            "this host offers {name:?} in {} only, not version {version}",
            offered.join(", ")
        )
    };
    game::service_error(
        ServiceErrorKind::NotSupported,
        format!(
            "{detail} (not supported by this host; plugin ABI {})",
            plugin_api::abi::ABI_VERSION
        ),
    )
}

/// The unit of work a host-service call joins.
enum Joined {
    /// The request's, ended with its response.
    Request(SharedRequestState),
    /// The event delivery's or lifecycle hook's in progress.
    Ambient(Arc<UnitOfWork>),
    /// One of the call's own (a call outside all of those), ended with the call.
    Own(UnitOfWork),
}

impl Joined {
    fn unit(&self) -> &UnitOfWork {
        match self {
            Joined::Request(request) => &request.unit,
            Joined::Ambient(unit) => unit,
            Joined::Own(unit) => unit,
        }
    }
}

/// Gives the current (job) thread the lowest scheduling priority: CPU-heavy plugin work
/// such as password hashing then yields the cores to the request workers, so a burst of
/// logins does not slow everyone else's requests.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on this thread's own id; raising niceness needs no privilege.
    // Nice 19: the lowest weight, so a request worker that wakes up preempts at once.
    unsafe {
        let thread_id = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread_id, 19);
    }
}

/// The most verbose level the host records, so plugins drop finer lines before formatting.
pub fn max_plugin_log_level() -> LogLevel {
    match LevelFilter::current() {
        LevelFilter::TRACE => LogLevel::Trace,
        LevelFilter::DEBUG => LogLevel::Debug,
        LevelFilter::INFO => LogLevel::Info,
        LevelFilter::WARN => LogLevel::Warn,
        _ => LogLevel::Error,
    }
}

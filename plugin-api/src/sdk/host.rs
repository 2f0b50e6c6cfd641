//! The host services a plugin may call, as typed async methods over the one FFI `call`
//! (plus `run_blocking`). Each needs the permission named in `crate::game::ops`; without it
//! the host refuses with [`ServiceError`] `PermissionDenied` (and logs the denial).
//!
//! A [`Host`] carries its scope explicitly: the one a request handler gets from
//! [`Request::host`](super::request::Request::host) (or an event handler from
//! [`Event::host`](super::plugin::Event::host)) acts for that request's caller and joins
//! its unit of work; the one `on_load` hands out acts as the plugin itself, which sees no
//! user's data unless it holds `system:read` / `system:write`.

use std::sync::{Arc, Mutex};

use super::error::ApiError;
use crate::{
    abi::{
        BlockingJob, BlockingJob_TO, HostServicesHandle, LogLevel, RequestContextHandle,
        ServiceErrorKind,
    },
    db::{Rows, SqlDecodeError, SqlValue},
    game::{
        calls::{
            AdvanceWorld, ById, Emit, Executed, IssueToken, IssuedToken, LoginAttempt,
            LoginVerdict, PatchSession, SetExpressions, SetHotspots, SetSchedules, Sql,
            UpdateSession,
        },
        ops, Hotspot, Location, LocationSummary, NewLocation, NewNpc, NewSession, NewWorld, Npc,
        NpcExpression, NpcPresence, NpcScheduleEntry, NpcSummary, Operation, PresenceQuery,
        RawSession, Session, SessionPatch, SessionUpdate, World, WorldSummary,
    },
};
use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{ROption, RResult, RStr, RString, RVec},
};
use serde::{de::DeserializeOwned, Serialize};

pub use crate::abi::ServiceError;

impl From<SqlDecodeError> for ApiError {
    /// A stored value of an unexpected type is the server's problem: 500, cause logged.
    fn from(error: SqlDecodeError) -> ApiError {
        ApiError::internal(error.to_string())
    }
}

impl From<ServiceError> for ApiError {
    /// Not found → 404, conflict → 409, invalid → 400; a refused permission, a bad call, an
    /// operation the host does not offer or an unavailable host is the server's problem, not
    /// the client's → 500 (the cause goes to the log, not to the client).
    fn from(error: ServiceError) -> ApiError {
        match error.kind {
            ServiceErrorKind::NotFound => ApiError::not_found(error.message.as_str()),
            ServiceErrorKind::Conflict => ApiError::conflict(error.message.as_str()),
            ServiceErrorKind::Invalid => ApiError::bad_request(error.message.as_str()),
            _ => ApiError::internal(&error.message),
        }
    }
}

/// How many times [`Host::modify_session`] retries after losing a race.
pub const MODIFY_ATTEMPTS: usize = 200;

/// The host services this plugin may call, in one scope. Cheap to clone.
///
/// The `Host` from `on_load` (keep it in your plugin value) acts as the plugin itself: calls
/// made with it outside any request — from hooks, caches, background work — see no user's
/// worlds or sessions unless the plugin holds `system:read` (`system:write` to change them).
/// In a handler, use [`Request::host`](super::request::Request::host): it acts for the
/// request's caller and joins the request's unit of work.
#[derive(Clone)]
pub struct Host {
    services: HostServicesHandle,
    /// The request (or event delivery) this handle acts for; `None`: the plugin itself.
    context: Option<RequestContextHandle>,
}

impl Host {
    /// The plugin's own handle (no request behind it).
    pub(crate) fn new(services: HostServicesHandle) -> Host {
        Host {
            services,
            context: None,
        }
    }

    /// A handle acting for the request (or event delivery) behind `context`.
    pub(crate) fn scoped(services: HostServicesHandle, context: RequestContextHandle) -> Host {
        Host {
            services,
            context: Some(context),
        }
    }

    /// A handle over `services`, acting for the request behind `context` (`None`: as the
    /// plugin itself). For the host's test harness (`host::testing`), which sets up data as
    /// a user; plugins get their handles from `on_load`, requests and events.
    #[doc(hidden)]
    pub fn for_tests(services: HostServicesHandle, context: Option<RequestContextHandle>) -> Host {
        Host { services, context }
    }

    pub(crate) fn services(&self) -> HostServicesHandle {
        self.services.clone()
    }

    /// Whether this handle acts for a request's (or an event's) caller rather than for the
    /// plugin itself.
    pub fn is_scoped_to_caller(&self) -> bool {
        self.context.is_some()
    }

    /// Writes a log line through the host (prefer the `log` macros, which come here).
    pub fn log(&self, level: LogLevel, target: &str, message: &str) {
        self.services
            .log(level, RStr::from_str(target), RStr::from_str(message));
    }

    /// Calls an operation with a JSON payload. The typed methods below are built on this.
    pub async fn call<T: DeserializeOwned>(
        &self,
        operation: Operation,
        payload: &impl Serialize,
    ) -> Result<T, ServiceError> {
        let payload = serde_json::to_vec(payload).map_err(|e| invalid(format!("payload: {e}")))?;
        let answer = self
            .services
            .call(
                ROption::from(self.context.clone()),
                RStr::from_str(operation.name),
                operation.version,
                RVec::from(payload),
            )
            .await;
        match answer {
            RResult::ROk(bytes) => serde_json::from_slice(&bytes).map_err(|e| ServiceError {
                kind: ServiceErrorKind::Unavailable,
                message: format!("unreadable answer to {}: {e}", operation.name).into(),
            }),
            RResult::RErr(error) => Err(error),
        }
    }

    /// Whether this host offers `operation` (in its version): a capability query, for a
    /// plugin that can do without an operation newer hosts added (ask in `on_load`). A host
    /// older than plugin ABI 1.1 cannot answer and reports `false`; calling an operation a
    /// host lacks answers [`ServiceErrorKind::NotSupported`].
    pub fn supports(&self, operation: Operation) -> bool {
        self.services
            .supports(RStr::from_str(operation.name), operation.version)
    }

    /// Runs `work` on the host's blocking pool, off the async workers that other requests
    /// share: for CPU-heavy work such as password hashing. A panic in `work` is an error.
    pub async fn run_blocking<T, F>(&self, work: F) -> Result<T, ServiceError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let slot = Arc::new(Mutex::new(None));
        let job = ClosureJob {
            work: Some(work),
            slot: slot.clone(),
        };
        let outcome = self
            .services
            .run_blocking(BlockingJob_TO::from_value(job, TD_Opaque))
            .await;
        if let RResult::RErr(message) = outcome {
            return Err(ServiceError {
                kind: ServiceErrorKind::Unavailable,
                message: format!("blocking work failed: {message}").into(),
            });
        }
        let result = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        result.ok_or_else(|| ServiceError {
            kind: ServiceErrorKind::Unavailable,
            message: "blocking work produced no result".into(),
        })
    }

    /// Mints an access token for a user (needs `auth:issue`; the sign-in plugin's job).
    pub async fn issue_token(
        &self,
        user_id: i64,
        roles: Vec<String>,
        ttl_secs: u64,
    ) -> Result<IssuedToken, ServiceError> {
        self.call(
            ops::AUTH_ISSUE_TOKEN,
            &IssueToken {
                user_id,
                roles,
                ttl_secs,
            },
        )
        .await
    }

    /// Before checking a sign-in's password (needs `auth:throttle`; call it on the request's
    /// handle): whether the host's login throttle refuses the attempt (too many failed
    /// sign-ins for this username or from this client address: answer 429 with its
    /// `Retry-After`). If not, the attempt counts as a failure until
    /// [`Host::login_succeeded`] says the password was right.
    pub async fn login_attempt(&self, username: &str) -> Result<LoginVerdict, ServiceError> {
        self.call(
            ops::AUTH_LOGIN_ATTEMPT,
            &LoginAttempt {
                username: username.to_owned(),
            },
        )
        .await
    }

    /// After a correct password (needs `auth:throttle`): the attempt
    /// [`Host::login_attempt`] counted is not a failure after all.
    pub async fn login_succeeded(&self, username: &str) -> Result<(), ServiceError> {
        let () = self
            .call(
                ops::AUTH_LOGIN_SUCCEEDED,
                &LoginAttempt {
                    username: username.to_owned(),
                },
            )
            .await?;
        Ok(())
    }

    /// Emits an event (needs `event:emit`). Emitted while handling a request, it is
    /// delivered only if that request succeeds, after its response; otherwise at once.
    pub async fn emit(&self, topic: &str, payload: &impl Serialize) -> Result<(), ServiceError> {
        let payload =
            serde_json::to_value(payload).map_err(|e| invalid(format!("event payload: {e}")))?;
        let () = self
            .call(
                ops::EVENT_EMIT,
                &Emit {
                    topic: topic.to_owned(),
                    payload,
                },
            )
            .await?;
        Ok(())
    }

    /// Emits an event the plugin's own work does not depend on: a refusal (say, the operator
    /// denied `event:emit`) is logged as a warning instead of failing the caller.
    pub async fn announce(&self, topic: &str, payload: &impl Serialize) {
        if let Err(error) = self.emit(topic, payload).await {
            log::warn!("event {topic} was not emitted: {error}");
        }
    }

    /// Worlds, by id.
    pub async fn list_worlds(&self) -> Result<Vec<WorldSummary>, ServiceError> {
        self.call(ops::WORLD_LIST, &()).await
    }

    /// One world.
    pub async fn get_world(&self, id: i64) -> Result<World, ServiceError> {
        self.call(ops::WORLD_GET, &ById { id }).await
    }

    /// Creates a world at time 0.
    pub async fn create_world(&self, world: &NewWorld) -> Result<World, ServiceError> {
        self.call(ops::WORLD_CREATE, world).await
    }

    /// Advances a world's clock (negative counts as 0).
    pub async fn advance_world(&self, id: i64, delta_seconds: f64) -> Result<World, ServiceError> {
        self.call(ops::WORLD_ADVANCE, &AdvanceWorld { id, delta_seconds })
            .await
    }

    /// Creates a session.
    pub async fn create_session(&self, session: &NewSession) -> Result<Session, ServiceError> {
        self.call(ops::SESSION_CREATE, session).await
    }

    /// One session.
    pub async fn get_session(&self, id: i64) -> Result<Session, ServiceError> {
        self.call(ops::SESSION_GET, &ById { id }).await
    }

    /// Applies an update atomically; with `expected_version`, only to that version.
    pub async fn update_session(
        &self,
        id: i64,
        update: &SessionUpdate,
    ) -> Result<Session, ServiceError> {
        let update = update.clone();
        self.call(ops::SESSION_UPDATE, &UpdateSession { id, update })
            .await
    }

    /// Applies changes at paths inside a session's `flags` and `relationships` in one step in
    /// the host: no read first, no whole document sent, no conflict with writers of other
    /// keys. The session after the change, with its documents as JSON text (pass them on
    /// without parsing; `serde_json::from_str(flags.get())` when you need the values).
    pub async fn patch_session(
        &self,
        id: i64,
        patch: &SessionPatch,
    ) -> Result<RawSession, ServiceError> {
        let patch = patch.clone();
        self.call(ops::SESSION_PATCH, &PatchSession { id, patch })
            .await
    }

    /// Read-modify-write of a session that loses no update under concurrency: reads it,
    /// lets `change` edit flags, relationships and world time, and writes it back only if
    /// nobody else did in between, retrying otherwise. Returns the saved session and what
    /// `change` returned the last time.
    pub async fn modify_session<R>(
        &self,
        id: i64,
        mut change: impl FnMut(&mut Session) -> Result<R, ApiError> + Send,
    ) -> Result<(Session, R), ApiError> {
        for _ in 0..MODIFY_ATTEMPTS {
            let mut session = self.get_session(id).await?;
            let outcome = change(&mut session)?;
            let update = SessionUpdate {
                world_time: Some(session.world_time),
                flags: Some(session.flags),
                relationships: Some(session.relationships),
                expected_version: Some(session.version),
            };
            match self.update_session(id, &update).await {
                Ok(saved) => return Ok((saved, outcome)),
                Err(error) if error.kind == ServiceErrorKind::Conflict => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(ApiError::conflict(format!(
            "GameSession {id} changed {MODIFY_ATTEMPTS} times while this request tried to update it; try again"
        )))
    }

    /// NPCs, by id.
    pub async fn list_npcs(&self) -> Result<Vec<NpcSummary>, ServiceError> {
        self.call(ops::NPC_LIST, &()).await
    }

    /// One NPC.
    pub async fn get_npc(&self, id: i64) -> Result<Npc, ServiceError> {
        self.call(ops::NPC_GET, &ById { id }).await
    }

    /// Creates an NPC.
    pub async fn create_npc(&self, npc: &NewNpc) -> Result<Npc, ServiceError> {
        self.call(ops::NPC_CREATE, npc).await
    }

    /// An NPC's expressions.
    pub async fn npc_expressions(&self, npc_id: i64) -> Result<Vec<NpcExpression>, ServiceError> {
        self.call(ops::NPC_EXPRESSIONS_GET, &ById { id: npc_id })
            .await
    }

    /// Replaces an NPC's expressions.
    pub async fn set_npc_expressions(
        &self,
        npc_id: i64,
        expressions: Vec<NpcExpression>,
    ) -> Result<Vec<NpcExpression>, ServiceError> {
        self.call(
            ops::NPC_EXPRESSIONS_SET,
            &SetExpressions {
                npc_id,
                expressions,
            },
        )
        .await
    }

    /// An NPC's weekly schedule.
    pub async fn npc_schedules(&self, npc_id: i64) -> Result<Vec<NpcScheduleEntry>, ServiceError> {
        self.call(ops::NPC_SCHEDULES_GET, &ById { id: npc_id })
            .await
    }

    /// Replaces an NPC's weekly schedule.
    pub async fn set_npc_schedules(
        &self,
        npc_id: i64,
        schedules: Vec<NpcScheduleEntry>,
    ) -> Result<Vec<NpcScheduleEntry>, ServiceError> {
        self.call(ops::NPC_SCHEDULES_SET, &SetSchedules { npc_id, schedules })
            .await
    }

    /// Which NPCs are where at a world time.
    pub async fn npc_presence(
        &self,
        query: &PresenceQuery,
    ) -> Result<Vec<NpcPresence>, ServiceError> {
        self.call(ops::NPC_PRESENCE, query).await
    }

    /// Locations, by id.
    pub async fn list_locations(&self) -> Result<Vec<LocationSummary>, ServiceError> {
        self.call(ops::LOCATION_LIST, &()).await
    }

    /// One location with its hotspots.
    pub async fn get_location(&self, id: i64) -> Result<Location, ServiceError> {
        self.call(ops::LOCATION_GET, &ById { id }).await
    }

    /// Creates a location.
    pub async fn create_location(&self, location: &NewLocation) -> Result<Location, ServiceError> {
        self.call(ops::LOCATION_CREATE, location).await
    }

    /// Replaces a location's hotspots.
    pub async fn set_hotspots(
        &self,
        location_id: i64,
        hotspots: Vec<Hotspot>,
    ) -> Result<Location, ServiceError> {
        self.call(
            ops::LOCATION_HOTSPOTS_SET,
            &SetHotspots {
                location_id,
                hotspots,
            },
        )
        .await
    }

    /// Runs one read-only statement on the plugin's own tables (needs `db:read`), in a
    /// read-only transaction the database enforces; rows with typed values. Join
    /// `caller_sessions` / `caller_worlds` to keep to the caller's rows.
    pub async fn db_query(&self, sql: &str, params: Vec<SqlValue>) -> Result<Rows, ServiceError> {
        self.call(
            ops::DB_QUERY,
            &Sql {
                sql: sql.to_owned(),
                params,
            },
        )
        .await
    }

    /// Runs one statement on the plugin's own tables (needs `db:write`) in the unit of work
    /// of this handle's request: it commits with the request, or not at all. The number of
    /// rows changed.
    pub async fn db_execute(&self, sql: &str, params: Vec<SqlValue>) -> Result<u64, ServiceError> {
        let executed: Executed = self
            .call(
                ops::DB_EXECUTE,
                &Sql {
                    sql: sql.to_owned(),
                    params,
                },
            )
            .await?;
        Ok(executed.rows_affected)
    }
}

/// A closure packaged as a [`BlockingJob`]; its result waits in `slot` for the caller.
struct ClosureJob<F, T> {
    work: Option<F>,
    slot: Arc<Mutex<Option<T>>>,
}

impl<F, T> BlockingJob for ClosureJob<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn run(&mut self) -> RResult<(), RString> {
        let Some(work) = self.work.take() else {
            return RResult::RErr("the job already ran".into());
        };
        match super::panic::catch_panic(work) {
            Ok(value) => {
                *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
                RResult::ROk(())
            }
            Err(panic) => RResult::RErr(format!("panicked: {panic}").into()),
        }
    }
}

fn invalid(message: String) -> ServiceError {
    ServiceError {
        kind: ServiceErrorKind::BadCall,
        message: message.into(),
    }
}

//! The host configuration: defaults, then the TOML file, then environment, then flags
//! (each later source wins). Per-plugin tables `[plugins.<id>]` carry an `enabled`
//! override and the settings handed to that plugin's `on_load`; beside them, `[plugins]`
//! holds two plain keys: `lock` (the plugin lock file) and `allow_insecure_permissions`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::login_throttle::{LoginThrottleSettings, LoginThrottleTable};

/// Default address to serve on.
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";
/// Default plugin directory.
pub const DEFAULT_PLUGIN_DIR: &str = "./plugin-dir";
/// Default database: an SQLite file in the working directory, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://pixsim7.db";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default request body limit (1 MiB).
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The resolved configuration the host runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to serve on.
    pub bind: SocketAddr,
    /// Directory scanned for plugin libraries.
    pub plugin_dir: PathBuf,
    /// `sqlite://file.db` or `postgres://...`.
    pub database_url: String,
    /// Where the host keeps files of its own (a generated JWT secret).
    pub data_dir: PathBuf,
    /// `PIXSIM7_JWT_SECRET`: the secret itself.
    pub jwt_secret: Option<String>,
    /// `--jwt-secret-file` / `PIXSIM7_JWT_SECRET_FILE` / `jwt_secret_file`.
    pub jwt_secret_file: Option<PathBuf>,
    /// Origins a browser front end may call from (`[cors] allowed_origins`; `*` for any).
    pub cors_allowed_origins: Vec<String>,
    /// The longest lifetime a plugin may give a token it issues.
    pub max_token_ttl: Duration,
    /// Blocking jobs (`run_blocking`) that may run at once; more wait their turn.
    pub max_blocking_jobs: usize,
    /// Any plugin failure ends startup.
    pub strict: bool,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub body_limit: usize,
    /// HTTP worker threads.
    pub workers: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// How long one lifecycle hook may take before the plugin is failed.
    pub hook_timeout: Duration,
    /// Per-plugin tables, by plugin id.
    pub plugins: BTreeMap<String, PluginConfig>,
    /// The plugin lock file (`--lock` / `PIXSIM7_PLUGINS_LOCK` / `[plugins] lock`): when
    /// set, only the libraries pinned there, with their SHA-256, may load.
    pub plugins_lock: Option<PathBuf>,
    /// `[plugins] allow_insecure_permissions`: load libraries from a plugin directory (or
    /// files) writable by group or others or owned by another user. For development only.
    pub allow_insecure_permissions: bool,
    /// Permissions no plugin gets (`[permissions] deny`).
    pub denied_permissions: Vec<String>,
    /// How the event outbox is delivered and pruned (`[events]`).
    pub events: EventSettings,
    /// Bounds on what the game state accepts (`[game]`).
    pub game_limits: GameLimits,
    /// Failed sign-ins allowed per username and client address (`[login_throttle]`).
    pub login_throttle: LoginThrottleSettings,
    /// Time limits and what the host says about requests (`[http]`).
    pub http: HttpSettings,
    /// The stuck-worker watchdog and quarantine (`[watchdog]`).
    pub watchdog: WatchdogSettings,
}

/// `[http]`: how long a request may take, and what the host says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// Longest a plugin handler may take before the request is answered 504
    /// (`handler_timeout_secs`, `PIXSIM7_HANDLER_TIMEOUT_SECS`, default 30 s); a plugin's
    /// table may set its own, and a route's.
    pub handler_timeout: Duration,
    /// Longest the body of a request may take to arrive before it is answered 408
    /// (`body_read_timeout_secs`, default 10 s).
    pub body_read_timeout: Duration,
    /// Longest a client may take to send the head of the first request on a connection
    /// (`request_head_timeout_secs`, default 5 s): 408. (actix-http arms this timer for the
    /// first request only; in front of the host, nginx's `client_header_timeout` covers the
    /// rest.)
    pub request_head_timeout: Duration,
    /// How long, after a stop signal, the host goes on serving while `/readyz` answers 503,
    /// so load balancers stop sending before the listener closes (`shutdown_delay_secs`,
    /// default 0; a second signal ends it early).
    pub shutdown_delay: Duration,
    /// One log line per request (`access_log`, default true).
    pub access_log: bool,
    /// Who may read `/metrics` (`metrics`: `"public"`, the default, or `"admin"`).
    pub metrics_admin_only: bool,
}

/// Default `[http] handler_timeout_secs`.
pub const DEFAULT_HANDLER_TIMEOUT_SECS: u64 = 30;
/// Default `[http] body_read_timeout_secs`.
pub const DEFAULT_BODY_READ_TIMEOUT_SECS: u64 = 10;
/// Default `[http] request_head_timeout_secs`.
pub const DEFAULT_REQUEST_HEAD_TIMEOUT_SECS: u64 = 5;

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            handler_timeout: Duration::from_secs(DEFAULT_HANDLER_TIMEOUT_SECS),
            body_read_timeout: Duration::from_secs(DEFAULT_BODY_READ_TIMEOUT_SECS),
            request_head_timeout: Duration::from_secs(DEFAULT_REQUEST_HEAD_TIMEOUT_SECS),
            shutdown_delay: Duration::ZERO,
            access_log: true,
            metrics_admin_only: false,
        }
    }
}

/// `[watchdog]`: noticing handlers that block their worker thread, and quarantining plugins
/// that keep doing it (or keep panicking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogSettings {
    /// A handler that has not yielded for this long has stalled its worker
    /// (`stall_threshold_ms`, default 1000).
    pub stall_threshold: Duration,
    /// Stalls and panics of one plugin within `quarantine_window` that quarantine it
    /// (`quarantine_after`, default 10; 0 never quarantines).
    pub quarantine_after: u32,
    /// `quarantine_window_secs`, default 60.
    pub quarantine_window: Duration,
    /// The `Retry-After` a quarantined plugin's routes answer with (`retry_after_secs`,
    /// default 60).
    pub retry_after: Duration,
}

impl Default for WatchdogSettings {
    fn default() -> Self {
        WatchdogSettings {
            stall_threshold: Duration::from_millis(1000),
            quarantine_after: 10,
            quarantine_window: Duration::from_secs(60),
            retry_after: Duration::from_secs(60),
        }
    }
}

/// `[events]`: delivery from the outbox table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSettings {
    /// How long a delivered event stays in the outbox before it is pruned
    /// (`retention_secs`, default a day).
    pub retention: Duration,
    /// How often each subscriber looks at the outbox when nothing woke it (`poll_interval_ms`,
    /// default 1000): the bound on the delay a lost wake-up (or an event written by another
    /// instance without a notification) can cause.
    pub poll_interval: Duration,
}

/// `[game]`: bounds on game state documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GameLimits {
    /// Largest `flags` or `relationships` document of one session, in bytes of JSON
    /// (`max_session_document_bytes`, default 256 KiB).
    pub max_session_document_bytes: usize,
    /// Longest a plugin's own SQL statement may run (`plugin_statement_timeout_ms`, default
    /// 5 s); a statement that runs longer is stopped and its call fails.
    pub plugin_statement_timeout: Duration,
}

impl Default for GameLimits {
    fn default() -> Self {
        GameLimits {
            max_session_document_bytes: DEFAULT_MAX_SESSION_DOCUMENT_BYTES,
            plugin_statement_timeout: Duration::from_millis(DEFAULT_PLUGIN_STATEMENT_TIMEOUT_MS),
        }
    }
}

/// One `[plugins.<id>]` table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginConfig {
    /// The operator's `enabled` override, when given.
    pub enabled: Option<bool>,
    /// Permissions this plugin does not get (`deny = [...]`).
    pub deny: Vec<String>,
    /// The plugin's own handler timeout (`handler_timeout_secs`), over `[http]`'s.
    pub handler_timeout: Option<Duration>,
    /// Per-route handler timeouts (`[plugins.<id>.route_timeout_secs]`, keyed by
    /// `"METHOD /full/path"` as the admin API lists routes), over the plugin's.
    pub route_timeouts: BTreeMap<String, Duration>,
    /// Everything else in the table, handed to the plugin's `on_load` as a JSON object.
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// Values given on the command line or in the environment (`None` when absent); the
/// command-line layer parses them, this layer merges them over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config` / `PIXSIM7_CONFIG`.
    pub config_file: Option<PathBuf>,
    /// `--bind` / `PIXSIM7_BIND`.
    pub bind: Option<String>,
    /// `--plugin-dir` / `PIXSIM7_PLUGIN_DIR`.
    pub plugin_dir: Option<PathBuf>,
    /// `--strict` / `PIXSIM7_STRICT`.
    pub strict: Option<bool>,
    /// `--workers` / `PIXSIM7_WORKERS`.
    pub workers: Option<usize>,
    /// `--database-url` / `PIXSIM7_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `--data-dir` / `PIXSIM7_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `PIXSIM7_JWT_SECRET`.
    pub jwt_secret: Option<String>,
    /// `--jwt-secret-file` / `PIXSIM7_JWT_SECRET_FILE`.
    pub jwt_secret_file: Option<PathBuf>,
    /// `--lock` / `PIXSIM7_PLUGINS_LOCK`.
    pub lock: Option<PathBuf>,
    /// `--handler-timeout-secs` / `PIXSIM7_HANDLER_TIMEOUT_SECS`.
    pub handler_timeout_secs: Option<u64>,
}

/// The config file's shape. Unknown keys are errors, so a typo never silently does nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<String>,
    plugin_dir: Option<PathBuf>,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    jwt_secret_file: Option<PathBuf>,
    max_token_ttl_secs: Option<u64>,
    max_blocking_jobs: Option<usize>,
    strict: Option<bool>,
    body_limit: Option<usize>,
    workers: Option<usize>,
    shutdown_timeout_secs: Option<u64>,
    hook_timeout_secs: Option<u64>,
    /// `[plugins.<id>]` tables, and the plain keys `lock` and `allow_insecure_permissions`.
    #[serde(default)]
    plugins: toml::Table,
    #[serde(default)]
    permissions: PermissionsTable,
    #[serde(default)]
    events: EventsTable,
    #[serde(default)]
    game: GameTable,
    #[serde(default)]
    cors: CorsTable,
    #[serde(default)]
    login_throttle: LoginThrottleTable,
    #[serde(default)]
    http: HttpTable,
    #[serde(default)]
    watchdog: WatchdogTable,
}

/// `[http]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpTable {
    handler_timeout_secs: Option<u64>,
    body_read_timeout_secs: Option<u64>,
    request_head_timeout_secs: Option<u64>,
    shutdown_delay_secs: Option<u64>,
    access_log: Option<bool>,
    metrics: Option<MetricsAccess>,
}

/// `[http] metrics`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum MetricsAccess {
    Public,
    Admin,
}

/// `[watchdog]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchdogTable {
    stall_threshold_ms: Option<u64>,
    quarantine_after: Option<u32>,
    quarantine_window_secs: Option<u64>,
    retry_after_secs: Option<u64>,
}

/// `[cors]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CorsTable {
    #[serde(default)]
    allowed_origins: Vec<String>,
}

/// `[permissions]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionsTable {
    #[serde(default)]
    deny: Vec<String>,
}

/// `[events]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsTable {
    retention_secs: Option<u64>,
    poll_interval_ms: Option<u64>,
}

/// `[game]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GameTable {
    max_session_document_bytes: Option<usize>,
    plugin_statement_timeout_ms: Option<u64>,
}

/// Default `[game] plugin_statement_timeout_ms`.
pub const DEFAULT_PLUGIN_STATEMENT_TIMEOUT_MS: u64 = 5000;

/// Default `[events] retention_secs`: a day.
pub const DEFAULT_EVENT_RETENTION_SECS: u64 = 86_400;
/// Default `[events] poll_interval_ms`.
pub const DEFAULT_EVENT_POLL_INTERVAL_MS: u64 = 1000;
/// Default `[game] max_session_document_bytes`: 256 KiB.
pub const DEFAULT_MAX_SESSION_DOCUMENT_BYTES: usize = 256 * 1024;

impl Config {
    /// Resolves the configuration: defaults < file < environment < flags.
    pub fn resolve(overrides: Overrides) -> anyhow::Result<Config> {
        let (file, file_dir) = match &overrides.config_file {
            Some(path) => (read_file(path)?, path.parent().map(Path::to_path_buf)),
            None => (FileConfig::default(), None),
        };
        let bind_text = overrides
            .bind
            .or(file.bind)
            .unwrap_or_else(|| DEFAULT_BIND.to_owned());
        let bind = bind_text.parse().with_context(|| {
            format!("bind address {bind_text:?} is not an address like 127.0.0.1:8000")
        })?;
        let plugin_dir = match (overrides.plugin_dir, file.plugin_dir) {
            (Some(dir), _) => dir,
            // A relative path in the file is relative to the file, not the working directory.
            (None, Some(dir)) => match &file_dir {
                Some(base) if dir.is_relative() => base.join(dir),
                _ => dir,
            },
            (None, None) => PathBuf::from(DEFAULT_PLUGIN_DIR),
        };
        let workers = overrides
            .workers
            .or(file.workers)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        if workers == 0 {
            bail!("workers must be at least 1");
        }
        let body_limit = file.body_limit.unwrap_or(DEFAULT_BODY_LIMIT);
        let PluginsSection {
            plugins,
            lock: file_lock,
            allow_insecure_permissions,
        } = plugins_section(file.plugins)?;
        check_permission_names("[permissions] deny", &file.permissions.deny)?;
        let events = EventSettings {
            retention: Duration::from_secs(
                file.events
                    .retention_secs
                    .unwrap_or(DEFAULT_EVENT_RETENTION_SECS),
            ),
            poll_interval: Duration::from_millis(
                file.events
                    .poll_interval_ms
                    .unwrap_or(DEFAULT_EVENT_POLL_INTERVAL_MS),
            ),
        };
        if !(10..=60_000).contains(&events.poll_interval.as_millis()) {
            bail!(
                "[events] poll_interval_ms must be between 10 and 60000, got {}",
                events.poll_interval.as_millis()
            );
        }
        let max_session_document_bytes = file
            .game
            .max_session_document_bytes
            .unwrap_or(DEFAULT_MAX_SESSION_DOCUMENT_BYTES);
        if max_session_document_bytes < 2 {
            bail!("[game] max_session_document_bytes must be at least 2 (the size of {{}})");
        }
        let plugin_statement_timeout_ms = file
            .game
            .plugin_statement_timeout_ms
            .unwrap_or(DEFAULT_PLUGIN_STATEMENT_TIMEOUT_MS);
        if plugin_statement_timeout_ms == 0 {
            bail!("[game] plugin_statement_timeout_ms must be at least 1");
        }
        let relative_to_file = |path: PathBuf| match &file_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path,
        };
        let data_dir = overrides
            .data_dir
            .or_else(|| file.data_dir.map(relative_to_file))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let jwt_secret_file = overrides
            .jwt_secret_file
            .or_else(|| file.jwt_secret_file.map(relative_to_file));
        let plugins_lock = overrides.lock.or_else(|| file_lock.map(relative_to_file));
        let max_token_ttl_secs = file.max_token_ttl_secs.unwrap_or(7 * 86_400);
        if !(60..=366 * 86_400).contains(&max_token_ttl_secs) {
            bail!("max_token_ttl_secs must be between 60 and 31622400 (a year), got {max_token_ttl_secs}");
        }
        if file.max_blocking_jobs == Some(0) {
            bail!("max_blocking_jobs must be at least 1");
        }
        let http = http_settings(&file.http, overrides.handler_timeout_secs)?;
        let watchdog = watchdog_settings(&file.watchdog)?;
        let login_throttle =
            LoginThrottleSettings::from_table(file.login_throttle).map_err(anyhow::Error::msg)?;
        Ok(Config {
            bind,
            plugin_dir,
            data_dir,
            jwt_secret: overrides.jwt_secret,
            jwt_secret_file,
            cors_allowed_origins: file.cors.allowed_origins,
            max_token_ttl: Duration::from_secs(max_token_ttl_secs),
            max_blocking_jobs: file
                .max_blocking_jobs
                .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, usize::from)),
            database_url: overrides
                .database_url
                .or(file.database_url)
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            strict: overrides.strict.or(file.strict).unwrap_or(false),
            body_limit,
            workers,
            shutdown_timeout: Duration::from_secs(file.shutdown_timeout_secs.unwrap_or(30)),
            hook_timeout: Duration::from_secs(file.hook_timeout_secs.unwrap_or(30)),
            plugins,
            plugins_lock,
            allow_insecure_permissions: allow_insecure_permissions.unwrap_or(false),
            denied_permissions: file.permissions.deny,
            events,
            game_limits: GameLimits {
                max_session_document_bytes,
                plugin_statement_timeout: Duration::from_millis(plugin_statement_timeout_ms),
            },
            http,
            watchdog,
            login_throttle,
        })
    }

    /// The operator's table for a plugin (empty when none).
    pub fn plugin(&self, id: &str) -> PluginConfig {
        self.plugins.get(id).cloned().unwrap_or_default()
    }
}

/// A number of seconds that must be at least 1 (and, for sanity, at most a day).
fn seconds(place: &str, value: u64) -> anyhow::Result<Duration> {
    if !(1..=86_400).contains(&value) {
        bail!("{place} must be between 1 and 86400 seconds, got {value}");
    }
    Ok(Duration::from_secs(value))
}

fn http_settings(table: &HttpTable, env_timeout: Option<u64>) -> anyhow::Result<HttpSettings> {
    let defaults = HttpSettings::default();
    let handler_timeout = match (env_timeout, table.handler_timeout_secs) {
        (Some(secs), _) => seconds("PIXSIM7_HANDLER_TIMEOUT_SECS", secs)?,
        (None, Some(secs)) => seconds("[http] handler_timeout_secs", secs)?,
        (None, None) => defaults.handler_timeout,
    };
    let optional = |place: &str, value: Option<u64>, default: Duration| match value {
        Some(secs) => seconds(place, secs),
        None => Ok(default),
    };
    Ok(HttpSettings {
        handler_timeout,
        body_read_timeout: optional(
            "[http] body_read_timeout_secs",
            table.body_read_timeout_secs,
            defaults.body_read_timeout,
        )?,
        request_head_timeout: optional(
            "[http] request_head_timeout_secs",
            table.request_head_timeout_secs,
            defaults.request_head_timeout,
        )?,
        shutdown_delay: match table.shutdown_delay_secs {
            Some(0) | None => Duration::ZERO,
            Some(secs) => seconds("[http] shutdown_delay_secs", secs)?,
        },
        access_log: table.access_log.unwrap_or(defaults.access_log),
        metrics_admin_only: table.metrics == Some(MetricsAccess::Admin),
    })
}

fn watchdog_settings(table: &WatchdogTable) -> anyhow::Result<WatchdogSettings> {
    let defaults = WatchdogSettings::default();
    let stall_threshold = match table.stall_threshold_ms {
        Some(ms) if !(10..=600_000).contains(&ms) => {
            bail!("[watchdog] stall_threshold_ms must be between 10 and 600000, got {ms}")
        }
        Some(ms) => Duration::from_millis(ms),
        None => defaults.stall_threshold,
    };
    Ok(WatchdogSettings {
        stall_threshold,
        quarantine_after: table.quarantine_after.unwrap_or(defaults.quarantine_after),
        quarantine_window: match table.quarantine_window_secs {
            Some(secs) => seconds("[watchdog] quarantine_window_secs", secs)?,
            None => defaults.quarantine_window,
        },
        retry_after: match table.retry_after_secs {
            Some(secs) => seconds("[watchdog] retry_after_secs", secs)?,
            None => defaults.retry_after,
        },
    })
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Rejects unknown permission names in the operator's policy, suggesting the closest one.
fn check_permission_names(place: &str, names: &[String]) -> anyhow::Result<()> {
    for name in names {
        if !plugin_api::permissions::is_known(name) {
            let hint = plugin_api::permissions::closest(name)
                .map(|known| format!(" (did you mean {known:?}?)"))
                .unwrap_or_default();
            bail!("{place}: unknown permission {name:?}{hint}");
        }
    }
    Ok(())
}

/// What the `[plugins]` table holds.
struct PluginsSection {
    plugins: BTreeMap<String, PluginConfig>,
    lock: Option<PathBuf>,
    allow_insecure_permissions: Option<bool>,
}

/// Splits `[plugins]`: a key whose value is a table is a plugin's `[plugins.<id>]`; `lock`
/// and `allow_insecure_permissions` are settings; anything else is an error.
fn plugins_section(section: toml::Table) -> anyhow::Result<PluginsSection> {
    let mut parsed = PluginsSection {
        plugins: BTreeMap::new(),
        lock: None,
        allow_insecure_permissions: None,
    };
    for (key, value) in section {
        match (key.as_str(), value) {
            (_, toml::Value::Table(table)) => {
                let config = plugin_config(&key, table)?;
                parsed.plugins.insert(key, config);
            }
            ("lock", toml::Value::String(path)) => parsed.lock = Some(PathBuf::from(path)),
            ("lock", other) => bail!(
                "[plugins] lock must be the path of the plugin lock file (a string), found {}",
                other.type_str()
            ),
            ("allow_insecure_permissions", toml::Value::Boolean(allow)) => {
                parsed.allow_insecure_permissions = Some(allow)
            }
            ("allow_insecure_permissions", other) => bail!(
                "[plugins] allow_insecure_permissions must be true or false, found {}",
                other.type_str()
            ),
            (_, other) => bail!(
                "[plugins] {key} must be a table [plugins.{key}] (or one of the keys lock, \
                 allow_insecure_permissions), found {}",
                other.type_str()
            ),
        }
    }
    Ok(parsed)
}

fn plugin_config(id: &str, mut table: toml::Table) -> anyhow::Result<PluginConfig> {
    let enabled = match table.remove("enabled") {
        None => None,
        Some(toml::Value::Boolean(enabled)) => Some(enabled),
        Some(other) => bail!(
            "[plugins.{id}] enabled must be true or false, found {}",
            other.type_str()
        ),
    };
    let deny = match table.remove("deny") {
        None => Vec::new(),
        Some(value) => value.try_into::<Vec<String>>().map_err(|_| {
            anyhow::anyhow!("[plugins.{id}] deny must be a list of permission names")
        })?,
    };
    check_permission_names(&format!("[plugins.{id}] deny"), &deny)?;
    let handler_timeout = match table.remove("handler_timeout_secs") {
        None => None,
        Some(toml::Value::Integer(secs)) => Some(seconds(
            &format!("[plugins.{id}] handler_timeout_secs"),
            u64::try_from(secs).unwrap_or(0),
        )?),
        Some(other) => bail!(
            "[plugins.{id}] handler_timeout_secs must be a number of seconds, found {}",
            other.type_str()
        ),
    };
    let mut route_timeouts = BTreeMap::new();
    match table.remove("route_timeout_secs") {
        None => {}
        Some(toml::Value::Table(routes)) => {
            for (route, value) in routes {
                let place = format!("[plugins.{id}.route_timeout_secs] {route:?}");
                let valid_key = route
                    .split_once(' ')
                    .is_some_and(|(method, path)| method.parse::<plugin_api::Method>().is_ok() && path.starts_with('/'));
                if !valid_key {
                    bail!("{place}: a key must be a method and a full path, like \"POST /api/v1/game/stealth/pickpocket\"");
                }
                let toml::Value::Integer(secs) = value else {
                    bail!("{place} must be a number of seconds, found {}", value.type_str());
                };
                route_timeouts.insert(route, seconds(&place, u64::try_from(secs).unwrap_or(0))?);
            }
        }
        Some(other) => bail!(
            "[plugins.{id}] route_timeout_secs must be a table of \"METHOD /path\" = seconds, found {}",
            other.type_str()
        ),
    }
    let settings = match serde_json::to_value(table)? {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("a TOML table serializes to a JSON object"),
    };
    Ok(PluginConfig {
        enabled,
        deny,
        handler_timeout,
        route_timeouts,
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempdir::Dir, PathBuf) {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("pixsim7.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path = std::env::temp_dir()
                    .join(format!("pixsim7-config-test-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn flags_beat_file_beats_defaults() {
        let (_dir, path) = write(
            "bind = \"127.0.0.1:9000\"\nplugin_dir = \"libs\"\nstrict = true\n\
             [plugins.dice-game]\nenabled = false\nmax_dice = 3\n",
        );
        let config = Config::resolve(Overrides {
            config_file: Some(path.clone()),
            bind: Some("127.0.0.1:9100".into()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(config.bind.port(), 9100, "flag wins over file");
        assert!(config.strict, "file wins over default");
        assert_eq!(config.plugin_dir, path.parent().unwrap().join("libs"));
        let dice = config.plugin("dice-game");
        assert_eq!(dice.enabled, Some(false));
        assert_eq!(dice.settings["max_dice"], 3);
        assert!(!dice.settings.contains_key("enabled"));
        assert_eq!(
            Config::resolve(Overrides::default()).unwrap().bind.port(),
            8000
        );
    }

    #[test]
    fn mistakes_in_the_file_are_reported() {
        let (_dir, path) = write("bnd = \"x\"\n");
        let error = Config::resolve(Overrides {
            config_file: Some(path),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("unknown field `bnd`"),
            "{error:#}"
        );

        let (_dir, path) = write("[permissions]\ndeny = [\"db:wirte\"]\n");
        let error = Config::resolve(Overrides {
            config_file: Some(path),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("did you mean \"db:write\""),
            "{error:#}"
        );

        let (_dir, path) = write("[plugins.a]\nenabled = \"no\"\n");
        let error = Config::resolve(Overrides {
            config_file: Some(path),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("enabled must be true or false"),
            "{error:#}"
        );

        let error = Config::resolve(Overrides {
            bind: Some("localhost".into()),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(error.to_string().contains("not an address"), "{error}");
    }

    #[test]
    fn the_plugins_table_holds_the_lock_and_insecure_permissions_beside_plugin_tables() {
        let (_dir, path) = write(
            "[plugins]\nlock = \"plugins.lock\"\nallow_insecure_permissions = true\n\
             [plugins.dice-game]\nenabled = false\n",
        );
        let config = Config::resolve(Overrides {
            config_file: Some(path.clone()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(
            config.plugins_lock,
            Some(path.parent().unwrap().join("plugins.lock")),
            "relative to the config file"
        );
        assert!(config.allow_insecure_permissions);
        assert_eq!(config.plugins.keys().collect::<Vec<_>>(), ["dice-game"]);
        assert_eq!(config.plugin("dice-game").enabled, Some(false));

        // The command line (or PIXSIM7_PLUGINS_LOCK, through the same field) wins.
        let config = Config::resolve(Overrides {
            config_file: Some(path),
            lock: Some(PathBuf::from("/etc/pixsim7/plugins.lock")),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(
            config.plugins_lock,
            Some(PathBuf::from("/etc/pixsim7/plugins.lock"))
        );

        // An absolute path in the file stays as it is.
        let (_dir, path) = write("[plugins]\nlock = \"/etc/pixsim7/plugins.lock\"\n");
        let config = Config::resolve(Overrides {
            config_file: Some(path),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(
            config.plugins_lock,
            Some(PathBuf::from("/etc/pixsim7/plugins.lock"))
        );
        assert!(!config.allow_insecure_permissions);

        let defaults = Config::resolve(Overrides::default()).unwrap();
        assert_eq!(defaults.plugins_lock, None);
        assert!(!defaults.allow_insecure_permissions);
    }

    #[test]
    fn mistakes_in_the_plugins_table_are_reported() {
        for (text, expected) in [
            (
                "[plugins]\nlock = 3\n",
                "[plugins] lock must be the path of the plugin lock file (a string), found integer",
            ),
            (
                "[plugins]\nallow_insecure_permissions = \"yes\"\n",
                "[plugins] allow_insecure_permissions must be true or false, found string",
            ),
            (
                "[plugins]\nlok = \"plugins.lock\"\n",
                "[plugins] lok must be a table [plugins.lok]",
            ),
        ] {
            let (_dir, path) = write(text);
            let error = Config::resolve(Overrides {
                config_file: Some(path),
                ..Overrides::default()
            })
            .unwrap_err();
            assert!(format!("{error:#}").contains(expected), "{error:#}");
        }
    }
}

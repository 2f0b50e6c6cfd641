//! The serving pipeline: discover → on_load → bind → on_enable → serve → (signal) drain →
//! on_disable. Also `build_app`, the actix application tests and the binary share.

use std::{sync::Arc, time::Duration};

use actix_web::{web, App};
use anyhow::{bail, Context};
use serde_json::json;

use tokio::sync::Semaphore;

use crate::{
    admin::AdminSnapshot,
    auth::{self, SecretSource, TokenKeys},
    config::Config,
    cors::CorsPolicy,
    db::{migrate::migrate_host, redact, Database},
    events::{EventBus, HOST_EMITTER},
    forward::{dispatch, ServedPlugin, ServedRoute, ServingState},
    http_server::{start_server, ServerSettings},
    in_flight::InFlight,
    listener,
    login_throttle::LoginThrottle,
    metrics::RouteMetrics,
    openapi::openapi_document,
    plugin_health::PluginHealth,
    plugins::services::SharedServices,
    plugins::{lifecycle, PluginRegistry, PluginState},
    readiness::Readiness,
    routing::{RouteTable, HOST_ROUTES},
    watchdog::Watchdog,
};

/// Runs the server until SIGTERM/SIGINT, then shuts down cleanly. It serves on `inherited`
/// (the socket the supervisor handed over: [`listener::take_inherited`]) when there is one,
/// else on the configured `bind`.
pub async fn serve(
    config: Config,
    inherited: Option<listener::InheritedListener>,
) -> anyhow::Result<()> {
    let mut registry = PluginRegistry::discover(&config)?;
    abort_on_fatal_failure(&registry, &config)?;
    registry.open_libraries(&config)?;
    abort_on_fatal_failure(&registry, &config)?;

    let keys = token_keys(&config)?;
    let database = open_database(&config).await?;
    let events = EventBus::new(&database, config.events, config.hook_timeout);
    let shared = Arc::new(SharedServices {
        database: database.clone(),
        events: events.clone(),
        keys: keys.clone(),
        max_token_ttl: config.max_token_ttl,
        blocking: Arc::new(Semaphore::new(config.max_blocking_jobs)),
        limits: config.game_limits,
        login_throttle: Arc::new(LoginThrottle::new(config.login_throttle.clone())),
    });
    lifecycle::subscribe_plugins(&mut registry, &events).await;
    lifecycle::load_plugins(&mut registry, &config, &shared).await;
    abort_on_fatal_failure(&registry, &config)?;

    let (listener, origin) = listener::serving_listener(inherited, config.bind)?;
    let address = listener.local_addr()?;

    lifecycle::enable_plugins(&mut registry, &config, &events).await;
    if let Err(error) = abort_on_fatal_failure(&registry, &config) {
        lifecycle::disable_plugins(&mut registry, &config, &events).await;
        return Err(error);
    }

    let state = web::Data::new(serving_state(&registry, &config, events.clone(), keys)?);
    // Signal handlers are ours, registered before the server accepts (and so before "Serving
    // on" is logged): a signal that arrives any time after that is a graceful shutdown.
    let mut signals = ShutdownSignals::register()?;
    let server = start_server(
        listener,
        state.clone(),
        &ServerSettings {
            workers: config.workers,
            shutdown_timeout: config.shutdown_timeout,
            request_head_timeout: config.http.request_head_timeout,
        },
    )?;
    let handle = server.handle();
    // How many requests the graceful stop abandoned, known before the server's future ends.
    let abandoned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stopping = actix_web::rt::spawn({
        let state = state.clone();
        let abandoned = abandoned.clone();
        let delay = config.http.shutdown_delay;
        let deadline = config.shutdown_timeout;
        async move {
            let signal = signals.recv().await;
            state.readiness.set_draining();
            if delay.is_zero() {
                tracing::info!("{signal} received; stopping gracefully: /readyz answers 503, the listener closes now");
            } else {
                tracing::info!(
                    "{signal} received; /readyz answers 503 and the host serves {} s more before it stops \
                     accepting (another signal ends this wait)",
                    delay.as_secs()
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    signal = signals.recv() => tracing::info!("{signal} received; stopping now"),
                }
            }
            stop_gracefully(&handle, origin, &state, deadline, &abandoned, &mut signals).await;
        }
    });
    let enabled = registry
        .records
        .iter()
        .filter(|r| r.state == PluginState::Enabled)
        .count();
    let serving: Vec<&str> = registry
        .load_order
        .iter()
        .map(|&i| &registry.records[i])
        .filter(|r| r.state == PluginState::Enabled)
        .map(|r| r.label())
        .collect();
    events
        .emit_now(HOST_EMITTER, "app:startup", &json!({ "plugins": serving }))
        .await;
    // Events written during startup (plugin:loaded, plugin:enabled, app:startup) flow now.
    events.start_delivery();
    state.readiness.set_ready();
    tracing::info!(%address, plugins = enabled, "Serving on http://{address}");
    server.await.context("server error")?;

    // The server ends only through the stop above (or an error, when no signal came).
    stopping.abort();
    let abandoned = abandoned.load(std::sync::atomic::Ordering::SeqCst);
    if abandoned == 0 {
        tracing::info!("Stopped accepting; in-flight requests finished");
    } else {
        tracing::warn!(
            abandoned,
            "Stopped accepting; {abandoned} requests still in flight at the shutdown deadline were abandoned"
        );
    }
    lifecycle::disable_plugins(&mut registry, &config, &events).await;
    events.stop_background().await;
    database.close().await;
    tracing::info!("Shutdown complete");
    Ok(())
}

/// `pixsim7 migrate`: the host's migrations, then those of every plugin that would load.
pub async fn migrate(config: Config) -> anyhow::Result<()> {
    let mut registry = PluginRegistry::discover(&config)?;
    registry.open_libraries(&config)?;
    let database = open_database(&config).await?;
    lifecycle::migrate_plugins(&mut registry, &database, config.hook_timeout).await;
    database.close().await;
    match registry.fatal_failure(true) {
        Some(reason) => bail!("migrations incomplete: {reason}"),
        None => Ok(()),
    }
}

/// Connects and applies the host's migrations, before any plugin code touches the data.
async fn open_database(config: &Config) -> anyhow::Result<Database> {
    let database = Database::connect(&config.database_url).await?;
    let report = migrate_host(&database)
        .await
        .context("host migrations failed")?;
    tracing::info!(
        database = %redact(&config.database_url),
        applied = report.applied.len(),
        "Database ready: {} ({} migrations applied now, {} before)",
        redact(&config.database_url),
        report.applied.len(),
        report.already_applied
    );
    Ok(database)
}

/// Stops the server: the listener closes at once, in-flight requests get until `deadline`;
/// those still running then are logged one by one, counted in `abandoned`, and abandoned.
async fn stop_gracefully(
    handle: &actix_web::dev::ServerHandle,
    origin: listener::ListenerOrigin,
    state: &ServingState,
    deadline: Duration,
    abandoned_count: &std::sync::atomic::AtomicUsize,
    signals: &mut ShutdownSignals,
) {
    listener::pause_and_hand_off(handle, origin).await;
    let stop = handle.stop(true);
    tokio::pin!(stop);
    // A little before actix's own deadline, so the requests are still there to be named.
    let report_at = deadline.saturating_sub(Duration::from_millis(50));
    tokio::select! {
        () = &mut stop => return,
        () = tokio::time::sleep(report_at) => {}
    }
    let abandoned = state
        .in_flight
        .snapshot(|plugin, route| state.describe_route(plugin, route));
    for request in &abandoned {
        tracing::warn!(
            request_id = request.request_id.to_str().unwrap_or_default(),
            plugin = %request.plugin,
            route = %request.route,
            in_flight_ms = request.age.as_millis() as u64,
            "abandoning request {} ({} of {}): still in flight after {:.1} s, past the shutdown timeout of {} s",
            request.request_id.to_str().unwrap_or_default(),
            request.route,
            request.plugin,
            request.age.as_secs_f64(),
            deadline.as_secs()
        );
    }
    abandoned_count.store(abandoned.len(), std::sync::atomic::Ordering::SeqCst);
    // actix drops them at its deadline, which a worker still blocked by a handler only sees
    // once the handler returns; another signal ends the wait for good.
    tokio::select! {
        () = &mut stop => {}
        signal = signals.recv() => {
            tracing::error!(
                "{signal} received while {} requests were still in flight past the shutdown \
                 timeout (a handler blocking its worker?); exiting now, without on_disable",
                abandoned.len()
            );
            std::process::exit(1);
        }
    }
}

/// SIGTERM and SIGINT, registered at once and received as often as they come.
struct ShutdownSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn register() -> anyhow::Result<ShutdownSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(ShutdownSignals {
                terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
                interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    /// The name of the next signal.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.interrupt.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// The actix application: one default service that routes through the route table.
pub fn build_app(
    state: web::Data<ServingState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .default_service(web::to(dispatch))
}

/// The state the request path reads: routes of the enabled plugins, the admin snapshot and
/// the OpenAPI document, all built once here.
pub fn serving_state(
    registry: &PluginRegistry,
    config: &Config,
    events: Arc<EventBus>,
    keys: TokenKeys,
) -> anyhow::Result<ServingState> {
    let mut routes = RouteTable::with_host_routes();
    let mut plugins = Vec::new();
    for &index in &registry.load_order {
        let record = &registry.records[index];
        if record.state != PluginState::Enabled {
            continue;
        }
        let id = record.label().to_owned();
        let full_routes = record.full_routes();
        routes
            .add_plugin_routes(&id, plugins.len(), &full_routes)
            .map_err(|error| anyhow::anyhow!("route table of enabled plugins: {error}"))?;
        plugins.push(ServedPlugin {
            routes: served_routes(&id, &full_routes, config),
            id,
            module: record
                .library
                .as_ref()
                .expect("enabled has a library")
                .module,
        });
    }
    let health = Arc::new(PluginHealth::new(
        plugins.iter().map(|p| p.id.clone()),
        config.watchdog,
    ));
    let watchdog = Watchdog::start(
        config.watchdog.stall_threshold,
        plugins
            .iter()
            .map(|p| {
                p.routes
                    .iter()
                    .map(|r| r.metrics.labels().clone())
                    .collect()
            })
            .collect(),
        health.clone(),
    )
    .context("cannot start the watchdog thread")?;
    Ok(ServingState {
        routes,
        admin: AdminSnapshot::new(registry),
        openapi: openapi_document(registry).to_string().into(),
        body_limit: config.body_limit,
        events,
        keys,
        cors: CorsPolicy::new(&config.cors_allowed_origins),
        http: config.http,
        health,
        watchdog,
        readiness: Readiness::default(),
        in_flight: InFlight::default(),
        host_metrics: HOST_ROUTES
            .iter()
            .map(|(method, path, _, _)| RouteMetrics::new("host", path, method.as_str()))
            .collect(),
        unmatched_metrics: RouteMetrics::new("none", "(unmatched)", "*"),
        preflight_metrics: RouteMetrics::new("host", "(preflight)", "OPTIONS"),
        plugin_states: registry
            .records
            .iter()
            .filter(|r| r.state != PluginState::Enabled)
            .map(|r| r.state.as_str())
            .collect(),
        subscribers: registry
            .records
            .iter()
            .filter(|r| r.state == PluginState::Enabled && r.subscriptions_active())
            .map(|r| r.label().to_owned())
            .collect(),
        plugins,
    })
}

/// A plugin's routes as the request path serves them, each with its time limit: the
/// route's own (`[plugins.<id>.route_timeout_secs]`), else the plugin's
/// (`handler_timeout_secs`), else `[http] handler_timeout_secs`.
fn served_routes(
    id: &str,
    routes: &[(plugin_api::Method, String, plugin_api::Access)],
    config: &Config,
) -> Vec<ServedRoute> {
    let plugin = config.plugin(id);
    let plugin_timeout = plugin
        .handler_timeout
        .unwrap_or(config.http.handler_timeout);
    let served: Vec<ServedRoute> = routes
        .iter()
        .map(|(method, path, _)| {
            let name = format!("{} {path}", method.as_str());
            ServedRoute {
                timeout: plugin
                    .route_timeouts
                    .get(&name)
                    .copied()
                    .unwrap_or(plugin_timeout),
                metrics: RouteMetrics::new(id, path, method.as_str()),
                template: path.clone(),
                name,
            }
        })
        .collect();
    for configured in plugin.route_timeouts.keys() {
        if !served.iter().any(|route| &route.name == configured) {
            tracing::warn!(
                plugin = id,
                "[plugins.{id}.route_timeout_secs] names {configured:?}, which is not a route of plugin {id}; \
                 its routes are: {}",
                served.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    served
}

/// The keys that verify (and, for `pixsim7 token` and the sign-in plugin, sign) access
/// tokens: from `PIXSIM7_JWT_SECRET` or the secret file; else, on SQLite only, a secret
/// generated once in the data directory. Several instances on PostgreSQL must share one
/// secret, so there the host refuses to start without a configured one.
pub fn token_keys(config: &Config) -> anyhow::Result<TokenKeys> {
    let configured = auth::configured_secret(
        config.jwt_secret.as_deref(),
        config.jwt_secret_file.as_deref(),
    )?;
    let (secret, source) = match configured {
        Some(found) => found,
        None if config.database_url.starts_with("postgres") => bail!(
            "no JWT secret configured: on PostgreSQL several instances must verify each other's tokens, \
             so set --jwt-secret-file, PIXSIM7_JWT_SECRET_FILE, PIXSIM7_JWT_SECRET or jwt_secret_file"
        ),
        None => auth::data_dir_secret(&config.data_dir)?,
    };
    let keys = TokenKeys::new(&secret).with_context(|| format!("JWT secret from {source:?}"))?;
    match &source {
        SecretSource::Generated(path) => tracing::warn!(
            path = %path.display(),
            "Generated a new JWT secret in {} (mode 0600); tokens are valid only with this data directory. \
             Configure --jwt-secret-file to share one between instances",
            path.display()
        ),
        SecretSource::DataDir(path) => {
            tracing::info!(path = %path.display(), "Using the JWT secret in {}", path.display())
        }
        SecretSource::File(path) => {
            tracing::info!(path = %path.display(), "Using the JWT secret from {}", path.display())
        }
        SecretSource::Environment => tracing::info!("Using the JWT secret from PIXSIM7_JWT_SECRET"),
    }
    Ok(keys)
}

fn abort_on_fatal_failure(registry: &PluginRegistry, config: &Config) -> anyhow::Result<()> {
    match registry.fatal_failure(config.strict) {
        Some(reason) => bail!("startup aborted: {reason}"),
        None => Ok(()),
    }
}

//! The serving pipeline: discover → on_load → bind → on_enable → serve → (signal) drain →
//! on_disable. Also `build_app`, the actix application tests and the binary share.

use std::sync::Arc;

use actix_web::{web, App, HttpServer};
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
    forward::{dispatch, ServedPlugin, ServingState},
    listener,
    openapi::openapi_document,
    plugins::services::SharedServices,
    plugins::{lifecycle, PluginRegistry, PluginState},
    routing::RouteTable,
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
    let server = HttpServer::new(move || build_app(state.clone()))
        .workers(config.workers)
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        // Our own handlers, registered before "Serving on" is logged: a signal that
        // arrives any time after that line is a graceful shutdown, never a kill.
        .disable_signals()
        .listen(listener)?
        .run();
    let shutdown = shutdown_on_signal()?;
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        let signal = shutdown.await;
        tracing::info!("{signal} received; stopping gracefully");
        listener::pause_and_hand_off(&handle, origin).await;
        handle.stop(true).await;
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
    tracing::info!(%address, plugins = enabled, "Serving on http://{address}");
    server.await.context("server error")?;

    tracing::info!("Stopped accepting; in-flight requests finished");
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

/// Registers SIGTERM and SIGINT handlers now; the future resolves to the name of the
/// first signal received.
#[cfg(unix)]
fn shutdown_on_signal() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    })
}

/// Ctrl-C where there are no Unix signals.
#[cfg(not(unix))]
fn shutdown_on_signal() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    })
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
        routes
            .add_plugin_routes(&id, plugins.len(), &record.full_routes())
            .map_err(|error| anyhow::anyhow!("route table of enabled plugins: {error}"))?;
        plugins.push(ServedPlugin {
            id,
            module: record
                .library
                .as_ref()
                .expect("enabled has a library")
                .module,
        });
    }
    Ok(ServingState {
        routes,
        plugins,
        admin: AdminSnapshot::new(registry),
        openapi: openapi_document(registry).to_string().into(),
        body_limit: config.body_limit,
        events,
        keys,
        cors: CorsPolicy::new(&config.cors_allowed_origins),
    })
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

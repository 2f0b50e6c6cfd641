//! `pixsim7`: the host binary. `serve` (the default) runs the server; `plugins` reports
//! what the server would load, without serving.

use std::{path::PathBuf, process::ExitCode};

use clap::{builder::BoolishValueParser, Args, Parser, Subcommand};
use host::{
    config::{Config, Overrides},
    plugins::PluginRegistry,
    report, startup, telemetry,
};

/// The PixSim7 game backend: a host whose features are plugin libraries.
#[derive(Parser)]
#[command(name = "pixsim7", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    options: GlobalArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the plugins' routes (the default).
    ///
    /// Started by systemd socket activation (LISTEN_PID is this process, LISTEN_FDS=1: one
    /// listening TCP socket as fd 3), it serves on that socket and ignores --bind; the
    /// socket then outlives the process, so a restart drops no connection (see
    /// docs/operations.md). A handover that is not exactly one listening TCP socket stops
    /// startup with the reason.
    Serve,
    /// Show every plugin library found, its manifest, its state and the load order, then
    /// exit (non-zero when any plugin would fail).
    Plugins(PluginsArgs),
    /// Apply the database migrations (the host's, then those of every plugin that would
    /// load), then exit.
    Migrate,
    /// Print an access token signed with the configured secret, for scripts and smoke
    /// tests.
    Token(TokenArgs),
}

#[derive(Args)]
struct TokenArgs {
    /// The user the token is for
    #[arg(long)]
    user_id: i64,
    /// Give the token the admin role
    #[arg(long)]
    admin: bool,
    /// Lifetime, like 90s, 15m, 1h, 7d
    #[arg(long, default_value = "1h")]
    ttl: String,
}

/// Options every command takes, before or after its name.
#[derive(Args, Clone, Default)]
struct GlobalArgs {
    /// Directory holding the plugin libraries [default: ./plugin-dir]
    #[arg(long, env = "PIXSIM7_PLUGIN_DIR", global = true)]
    plugin_dir: Option<PathBuf>,
    /// TOML configuration file
    #[arg(long, env = "PIXSIM7_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Any plugin failure is fatal at startup
    #[arg(long, env = "PIXSIM7_STRICT", global = true, num_args = 0..=1,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    strict: Option<bool>,
    /// Address to serve on, unless systemd hands over a socket (see `serve --help`)
    /// [default: 127.0.0.1:8000]
    #[arg(long, env = "PIXSIM7_BIND", global = true)]
    bind: Option<String>,
    /// HTTP worker threads [default: one per core]
    #[arg(long, env = "PIXSIM7_WORKERS", global = true)]
    workers: Option<usize>,
    /// Database: sqlite://file.db (created if missing) or postgres://... [default: sqlite://pixsim7.db]
    #[arg(long, env = "PIXSIM7_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Where the host keeps its own files, e.g. a generated JWT secret [default: ./data]
    #[arg(long, env = "PIXSIM7_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// File holding the secret that signs access tokens (HS256)
    #[arg(long, env = "PIXSIM7_JWT_SECRET_FILE", global = true)]
    jwt_secret_file: Option<PathBuf>,
    /// Lock file pinning the libraries that may load (written by `pixsim7 plugins lock`):
    /// any other library, or one whose SHA-256 differs, is refused
    #[arg(long = "lock", env = "PIXSIM7_PLUGINS_LOCK", global = true)]
    plugins_lock: Option<PathBuf>,
    /// Longest a plugin handler may take before its request is answered 504 [default: 30,
    /// or `[http] handler_timeout_secs`]
    #[arg(long, env = "PIXSIM7_HANDLER_TIMEOUT_SECS", global = true)]
    handler_timeout_secs: Option<u64>,
}

#[derive(Args)]
struct PluginsArgs {
    #[command(subcommand)]
    command: Option<PluginsCommand>,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Pin every plugin library in the plugin directory (id, version, file, SHA-256) in a
    /// lock file, for `--lock` / `[plugins] lock`
    Lock(LockArgs),
}

#[derive(Args)]
struct LockArgs {
    /// Where to write the lock file [default: plugins.lock beside the configuration file,
    /// or in the current directory without one]
    #[arg(long)]
    output: Option<PathBuf>,
}

/// See the workspace manifest: small allocations dominate the request path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging();
    let config_file = cli.options.config.clone();
    let result = Config::resolve(overrides(cli.options)).and_then(|config| match cli.command {
        None | Some(Command::Serve) => serve(config),
        Some(Command::Plugins(args)) => plugins(config, args, config_file),
        Some(Command::Migrate) => migrate(config),
        Some(Command::Token(args)) => token(config, args),
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("pixsim7: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn overrides(options: GlobalArgs) -> Overrides {
    Overrides {
        config_file: options.config,
        plugin_dir: options.plugin_dir,
        strict: options.strict,
        bind: options.bind,
        workers: options.workers,
        database_url: options.database_url,
        data_dir: options.data_dir,
        jwt_secret: std::env::var("PIXSIM7_JWT_SECRET")
            .ok()
            .filter(|s| !s.is_empty()),
        jwt_secret_file: options.jwt_secret_file,
        lock: options.plugins_lock,
        handler_timeout_secs: options.handler_timeout_secs,
    }
}

fn serve(config: Config) -> anyhow::Result<ExitCode> {
    // Before the runtime opens any file descriptor (fd 3 must still be the supervisor's) or
    // starts a thread (the environment changes).
    let inherited = host::listener::take_inherited()?;
    actix_web::rt::System::new().block_on(startup::serve(config, inherited))?;
    Ok(ExitCode::SUCCESS)
}

fn token(config: Config, args: TokenArgs) -> anyhow::Result<ExitCode> {
    let ttl = host::auth::parse_ttl(&args.ttl)?;
    let keys = startup::token_keys(&config)?;
    let roles = if args.admin {
        vec!["admin".to_owned()]
    } else {
        Vec::new()
    };
    println!("{}", keys.issue(args.user_id, &roles, ttl));
    Ok(ExitCode::SUCCESS)
}

fn migrate(config: Config) -> anyhow::Result<ExitCode> {
    actix_web::rt::System::new().block_on(startup::migrate(config))?;
    Ok(ExitCode::SUCCESS)
}

fn plugins(
    config: Config,
    args: PluginsArgs,
    config_file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    if let Some(PluginsCommand::Lock(lock)) = args.command {
        return lock_plugins(config, lock, config_file);
    }
    let registry = PluginRegistry::discover(&config)?;
    if args.json {
        println!("{}", report::json_report(&registry));
    } else {
        print!("{}", report::text_report(&registry));
    }
    let failed = report::has_failures(&registry) || registry.fatal_failure(config.strict).is_some();
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `pixsim7 plugins lock`: pins every library whose descriptor could be read, with the pins
/// of the configured lock file not applied (they are what is being replaced).
fn lock_plugins(
    config: Config,
    args: LockArgs,
    config_file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let registry = PluginRegistry::discover_with_lock(&config, false)?;
    let output = args.output.unwrap_or_else(|| {
        let beside = config_file.as_deref().and_then(std::path::Path::parent);
        beside
            .unwrap_or(std::path::Path::new(""))
            .join("plugins.lock")
    });
    let lock = registry.pins();
    lock.write(&output)?;
    for record in &registry.records {
        let pinned = lock.plugins.iter().any(|pin| pin.file == record.file);
        if !pinned {
            let reason = record.reason.as_deref().unwrap_or("unreadable");
            eprintln!("not pinned: {}: {reason}", record.file);
        }
    }
    println!(
        "pinned {} of {} plugin libraries in {}",
        lock.plugins.len(),
        registry.records.len(),
        output.display()
    );
    Ok(if lock.plugins.len() == registry.records.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

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
    Serve,
    /// Show every plugin library found, its manifest, its state and the load order, then
    /// exit (non-zero when any plugin would fail).
    Plugins(PluginsArgs),
    /// Apply the database migrations (the host's, then those of every plugin that would
    /// load), then exit.
    Migrate,
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
    /// Address to serve on [default: 127.0.0.1:8000]
    #[arg(long, env = "PIXSIM7_BIND", global = true)]
    bind: Option<String>,
    /// HTTP worker threads [default: one per core]
    #[arg(long, env = "PIXSIM7_WORKERS", global = true)]
    workers: Option<usize>,
    /// Database: sqlite://file.db (created if missing) or postgres://... [default: sqlite://pixsim7.db]
    #[arg(long, env = "PIXSIM7_DATABASE_URL", global = true)]
    database_url: Option<String>,
}

#[derive(Args)]
struct PluginsArgs {
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging();
    let result = Config::resolve(overrides(cli.options)).and_then(|config| match cli.command {
        None | Some(Command::Serve) => serve(config),
        Some(Command::Plugins(args)) => plugins(config, args),
        Some(Command::Migrate) => migrate(config),
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
    }
}

fn serve(config: Config) -> anyhow::Result<ExitCode> {
    actix_web::rt::System::new().block_on(startup::serve(config))?;
    Ok(ExitCode::SUCCESS)
}

fn migrate(config: Config) -> anyhow::Result<ExitCode> {
    actix_web::rt::System::new().block_on(startup::migrate(config))?;
    Ok(ExitCode::SUCCESS)
}

fn plugins(config: Config, args: PluginsArgs) -> anyhow::Result<ExitCode> {
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

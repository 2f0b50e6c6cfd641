//! Logging: `tracing` to stderr, filtered by `PIXSIM7_LOG` (or `RUST_LOG`, default `info`),
//! as text or, with `PIXSIM7_LOG_FORMAT=json`, one JSON object per line. Panics in the host
//! itself are logged through it too.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber and the panic hook. Call once, first thing.
pub fn init_logging() {
    let filter = std::env::var("PIXSIM7_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|error| {
        eprintln!("pixsim7: ignoring invalid log filter {filter:?}: {error}");
        EnvFilter::new("info")
    });
    let json = std::env::var("PIXSIM7_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(target: "pixsim7::panic", "host panic: {info}");
    }));
}

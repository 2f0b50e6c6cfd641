//! Routes the plugin's `log` macros to the host, which writes them into its `tracing`
//! output tagged with the plugin id. (A plugin's own `tracing` globals would go nowhere:
//! each cdylib links its own copy.)

use std::sync::OnceLock;

use abi_stable::std_types::RStr;

use crate::abi::{HostServicesHandle, LogLevel};

static HOST: OnceLock<HostServicesHandle> = OnceLock::new();

struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Some(host) = HOST.get() else { return };
        let level = match record.level() {
            log::Level::Error => LogLevel::Error,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Info => LogLevel::Info,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Trace => LogLevel::Trace,
        };
        let message = record.args().to_string();
        host.log(
            level,
            RStr::from_str(record.target()),
            RStr::from_str(&message),
        );
    }

    fn flush(&self) {}
}

/// Points this library's `log` facade at the host. Called once, at `on_load`.
pub(crate) fn install(services: HostServicesHandle, max_level: LogLevel) {
    let _ = HOST.set(services);
    let _ = log::set_logger(&HostLogger);
    log::set_max_level(match max_level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    });
}

//! The host services handed to each plugin at `on_load`: one object per plugin, bound to its
//! id by the host, so a plugin can only act (and log) under its own name.

use std::sync::Arc;

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RStr},
};
use plugin_api::abi::{HostServices, HostServicesHandle, HostServices_TO, LogLevel};
use tracing::level_filters::LevelFilter;

/// The tracing target of every log line a plugin writes.
pub const PLUGIN_LOG_TARGET: &str = "pixsim7::plugin";

/// Services bound to one plugin.
#[derive(Clone)]
pub struct PluginServices {
    plugin_id: Arc<str>,
}

impl PluginServices {
    /// The services object for plugin `plugin_id`, ready to cross the boundary.
    pub fn handle_for(plugin_id: &str) -> HostServicesHandle {
        let services = PluginServices {
            plugin_id: Arc::from(plugin_id),
        };
        HostServices_TO::from_ptr(RArc::new(services), TD_Opaque)
    }
}

impl HostServices for PluginServices {
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        let plugin = &*self.plugin_id;
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

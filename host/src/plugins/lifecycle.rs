//! Runs the plugins' lifecycle hooks in dependency order: `on_load` before the server binds,
//! `on_enable` once it is bound, `on_disable` in reverse at shutdown. Each hook runs under a
//! timeout and a panic backstop; a failure fails that plugin and skips its dependents.

use std::time::Duration;

use abi_stable::std_types::{RResult, RString};
use async_ffi::FfiFuture;
use plugin_api::{
    abi::{FaultKind, FfiLoadContext, PluginFault},
    sdk::panic::CatchPanic,
};

use super::{
    registry::{PluginRegistry, PluginState},
    services::{max_plugin_log_level, PluginServices},
};
use crate::{
    config::Config,
    db::{
        migrate::{migrate, PendingMigration},
        Database,
    },
};

/// Applies every pending plugin's own migrations (in load order), failing a plugin whose
/// migration fails.
pub async fn migrate_plugins(registry: &mut PluginRegistry, database: &Database) {
    for index in registry.load_order.clone() {
        if !registry.records[index].state.is_available() {
            continue;
        }
        if let Some(reason) = registry.unmet_dependency(index) {
            registry.set_outcome(index, PluginState::Skipped, reason);
            continue;
        }
        let descriptor = registry.records[index]
            .descriptor
            .as_ref()
            .expect("pending has a manifest");
        if descriptor.migrations.is_empty() {
            continue;
        }
        let migrations: Vec<PendingMigration<'_>> = descriptor
            .migrations
            .iter()
            .map(|m| PendingMigration {
                version: m.version,
                description: &m.description,
                sql: &m.sql,
            })
            .collect();
        let id = descriptor.manifest.id.clone();
        if let Err(error) = migrate(database, &id, &migrations).await {
            registry.set_outcome(index, PluginState::Failed, format!("{error:#}"));
        }
    }
}

/// Calls `on_load` on every pending plugin, in load order.
pub async fn load_plugins(registry: &mut PluginRegistry, config: &Config, database: &Database) {
    let mut loaded = 0;
    for index in registry.load_order.clone() {
        if registry.records[index].state != PluginState::Pending {
            continue;
        }
        if let Some(reason) = registry.unmet_dependency(index) {
            registry.set_outcome(index, PluginState::Skipped, reason);
            continue;
        }
        let record = &registry.records[index];
        let manifest = &record
            .descriptor
            .as_ref()
            .expect("pending has a manifest")
            .manifest;
        let module = record.library.expect("pending has a library").module;
        let settings = serde_json::Value::Object(config.plugin(&manifest.id).settings);
        let context = FfiLoadContext {
            config_json: RString::from(settings.to_string()),
            max_log_level: max_plugin_log_level(),
            services: PluginServices::handle_for(
                &manifest.id,
                &manifest.permissions,
                Some(database.clone()),
            ),
        };
        let (name, version) = (manifest.name.clone(), manifest.version.clone());
        match run_hook((module.on_load())(context), config.hook_timeout).await {
            Ok(()) => {
                registry.records[index].state = PluginState::Loaded;
                loaded += 1;
                tracing::info!(
                    plugin = registry.records[index].label(),
                    "Loaded plugin: {name} v{version}"
                );
            }
            Err(reason) => registry.set_outcome(
                index,
                PluginState::Failed,
                format!("on_load failed: {reason}"),
            ),
        }
    }
    tracing::info!(count = loaded, "Loaded {loaded} plugins");
}

/// Calls `on_enable` on every loaded plugin, in load order.
pub async fn enable_plugins(registry: &mut PluginRegistry, config: &Config) {
    for index in registry.load_order.clone() {
        if registry.records[index].state != PluginState::Loaded {
            continue;
        }
        if let Some(reason) = registry.unmet_dependency(index) {
            registry.set_outcome(index, PluginState::Skipped, reason);
            continue;
        }
        let module = registry.records[index]
            .library
            .expect("loaded has a library")
            .module;
        match run_hook((module.on_enable())(), config.hook_timeout).await {
            Ok(()) => {
                let record = &mut registry.records[index];
                record.state = PluginState::Enabled;
                tracing::info!(plugin = record.label(), "Enabled plugin {}", record.label());
            }
            Err(reason) => registry.set_outcome(
                index,
                PluginState::Failed,
                format!("on_enable failed: {reason}"),
            ),
        }
    }
}

/// Calls `on_disable` on every enabled plugin, in reverse load order. Failures are logged;
/// shutdown goes on.
pub async fn disable_plugins(registry: &mut PluginRegistry, config: &Config) {
    for index in registry.load_order.clone().into_iter().rev() {
        let record = &mut registry.records[index];
        if record.state != PluginState::Enabled {
            continue;
        }
        let module = record.library.expect("enabled has a library").module;
        match run_hook((module.on_disable())(), config.hook_timeout).await {
            Ok(()) => tracing::info!(
                plugin = record.label(),
                "Disabled plugin {}",
                record.label()
            ),
            Err(reason) => tracing::warn!(
                plugin = record.label(),
                "on_disable of plugin {} failed: {reason}",
                record.label()
            ),
        }
        record.state = PluginState::Disabled;
        record.reason = Some("the host shut down".to_owned());
    }
}

/// Awaits one hook under a timeout, turning every way it can fail into a reason.
async fn run_hook(
    hook: FfiFuture<RResult<(), PluginFault>>,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, CatchPanic::new(hook)).await {
        Err(_) => Err(format!("did not finish within {} s", timeout.as_secs())),
        // The SDK catches panics inside the plugin; this is the host's backstop.
        Ok(Err(panic)) => Err(format!("panicked: {panic}")),
        Ok(Ok(RResult::RErr(fault))) => Err(describe_fault(&fault)),
        Ok(Ok(RResult::ROk(()))) => Ok(()),
    }
}

/// A fault as text: panics say so.
pub fn describe_fault(fault: &PluginFault) -> String {
    match fault.kind {
        FaultKind::Panic => format!("panicked: {}", fault.message),
        FaultKind::Error => fault.message.to_string(),
    }
}

//! Runs the plugins' lifecycle hooks in dependency order: `on_load` before the server binds,
//! `on_enable` once it is bound, `on_disable` in reverse at shutdown. Each hook runs under a
//! timeout and a panic backstop; a failure fails that plugin and skips its dependents.

use std::{sync::Arc, time::Duration};

use abi_stable::std_types::{RResult, RString};
use async_ffi::FfiFuture;
use plugin_api::{
    abi::{FaultKind, FfiLoadContext, PluginFault},
    sdk::panic::CatchPanic,
};

use super::{
    registry::{PluginRegistry, PluginState},
    services::{max_plugin_log_level, PluginServices, SharedServices, AUDIT_TARGET},
};
use serde_json::json;

use crate::{
    config::Config,
    db::{
        migrate::{migrate, PendingMigration},
        unit_of_work::UnitOfWork,
        Database,
    },
    events::{EventBus, HOST_EMITTER},
};

/// `pixsim7 migrate`: applies the own migrations of every plugin that would load, in load
/// order, failing a plugin whose migration fails.
pub async fn migrate_plugins(
    registry: &mut PluginRegistry,
    database: &Database,
    timeout: Duration,
) {
    for index in registry.load_order.clone() {
        if !registry.records[index].state.is_available() {
            continue;
        }
        if let Some(reason) = registry.unmet_dependency(index) {
            registry.set_outcome(index, PluginState::Skipped, reason);
            continue;
        }
        if let Err(reason) = migrate_plugin(registry, index, database, timeout).await {
            registry.set_outcome(index, PluginState::Failed, reason);
        }
    }
}

/// Applies one plugin's own migrations, confined by the database to its own tables (and,
/// on PostgreSQL, sets up its role and schema), under the hook timeout.
async fn migrate_plugin(
    registry: &PluginRegistry,
    index: usize,
    database: &Database,
    timeout: Duration,
) -> Result<(), String> {
    let descriptor = registry.records[index]
        .descriptor
        .as_ref()
        .expect("pending has a manifest");
    let id = &descriptor.manifest.id;
    let migrations = pending_migrations(descriptor);
    if !needs_own_data(descriptor) {
        return Ok(());
    }
    match tokio::time::timeout(timeout, migrate(database, id, &migrations)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(format!("{error:#}")),
        Err(_) => Err(format!(
            "migrations did not finish within {} s",
            timeout.as_secs()
        )),
    }
}

/// A plugin's migrations, ready to apply.
pub fn pending_migrations(descriptor: &plugin_api::PluginDescriptor) -> Vec<PendingMigration<'_>> {
    descriptor
        .migrations
        .iter()
        .map(|migration| PendingMigration {
            version: migration.version,
            description: &migration.description,
            sql: &migration.sql,
        })
        .collect()
}

/// Whether a plugin has data of its own: migrations, or SQL permissions (on PostgreSQL it
/// then needs its role and schema even without tables).
pub fn needs_own_data(descriptor: &plugin_api::PluginDescriptor) -> bool {
    !descriptor.migrations.is_empty()
        || descriptor
            .manifest
            .permissions
            .iter()
            .any(|p| p == "db:read" || p == "db:write")
}

/// Subscribes every pending plugin whose subscriptions are in force, before any hook runs,
/// so it sees the lifecycle events of the plugins loaded before it. A plugin with
/// subscriptions but without `event:subscribe` gets none, and the audit log says so. A
/// plugin whose cursor cannot be set up fails.
pub async fn subscribe_plugins(registry: &mut PluginRegistry, events: &EventBus) {
    for index in registry.load_order.clone() {
        let record = &registry.records[index];
        let (Some(descriptor), Some(library)) = (&record.descriptor, record.library.as_ref())
        else {
            continue;
        };
        let manifest = &descriptor.manifest;
        if manifest.subscriptions.is_empty() || record.state != PluginState::Pending {
            continue;
        }
        if record.subscriptions_active() {
            let subscribed = events
                .subscribe(
                    &manifest.id,
                    &manifest.subscriptions,
                    library.module,
                    manifest.event_delivery,
                )
                .await;
            if let Err(error) = subscribed {
                registry.set_outcome(
                    index,
                    PluginState::Failed,
                    format!("its event cursor could not be set up: {error}"),
                );
            }
        } else {
            tracing::warn!(
                target: AUDIT_TARGET,
                plugin = %manifest.id,
                permission = "event:subscribe",
                operation = "subscribe",
                outcome = "denied",
                "plugin {} subscribes to [{}] but lacks permission event:subscribe; it receives no events",
                manifest.id,
                manifest.subscriptions.join(", ")
            );
        }
    }
}

/// Calls `on_load` on every pending plugin, in load order, and announces each success as
/// `plugin:loaded`.
pub async fn load_plugins(
    registry: &mut PluginRegistry,
    config: &Config,
    shared: &Arc<SharedServices>,
) {
    let (database, events) = (&shared.database, &shared.events);
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
        let module = record
            .library
            .as_ref()
            .expect("pending has a library")
            .module;
        let settings = serde_json::Value::Object(config.plugin(&manifest.id).settings);
        let context = FfiLoadContext {
            config_json: RString::from(settings.to_string()),
            max_log_level: max_plugin_log_level(),
            services: PluginServices::handle_for(manifest, &record.granted, shared.clone()),
        };
        // The plugin's own tables, just before its on_load.
        if let Err(reason) = migrate_plugin(registry, index, database, config.hook_timeout).await {
            events.unsubscribe(&manifest.id);
            registry.set_outcome(index, PluginState::Failed, reason);
            continue;
        }
        let (id, name, version) = (
            manifest.id.clone(),
            manifest.name.clone(),
            manifest.version.clone(),
        );
        match run_hook_in_unit(events, (module.on_load())(context), config.hook_timeout).await {
            Ok(()) => {
                registry.records[index].state = PluginState::Loaded;
                loaded += 1;
                tracing::info!(plugin = %id, "Loaded plugin: {name} v{version}");
                events
                    .emit_now(
                        HOST_EMITTER,
                        "plugin:loaded",
                        &json!({"plugin_id": id, "name": name, "version": version}),
                    )
                    .await;
            }
            Err(reason) => {
                events.unsubscribe(&id);
                registry.set_outcome(
                    index,
                    PluginState::Failed,
                    format!("on_load failed: {reason}"),
                );
            }
        }
    }
    // Plugins skipped or failed above must not keep a subscription.
    for &index in &registry.load_order {
        let record = &registry.records[index];
        if !record.state.is_available() {
            events.unsubscribe(record.label());
        }
    }
    tracing::info!(count = loaded, "Loaded {loaded} plugins");
}

/// Calls `on_enable` on every loaded plugin, in load order, announcing each as
/// `plugin:enabled`.
pub async fn enable_plugins(registry: &mut PluginRegistry, config: &Config, events: &EventBus) {
    for index in registry.load_order.clone() {
        if registry.records[index].state != PluginState::Loaded {
            continue;
        }
        let id = registry.records[index].label().to_owned();
        if let Some(reason) = registry.unmet_dependency(index) {
            events.unsubscribe(&id);
            registry.set_outcome(index, PluginState::Skipped, reason);
            continue;
        }
        let module = registry.records[index]
            .library
            .as_ref()
            .expect("loaded has a library")
            .module;
        match run_hook_in_unit(events, (module.on_enable())(), config.hook_timeout).await {
            Ok(()) => {
                registry.records[index].state = PluginState::Enabled;
                tracing::info!(plugin = %id, "Enabled plugin {id}");
                events
                    .emit_now(HOST_EMITTER, "plugin:enabled", &json!({"plugin_id": id}))
                    .await;
            }
            Err(reason) => {
                events.unsubscribe(&id);
                registry.set_outcome(
                    index,
                    PluginState::Failed,
                    format!("on_enable failed: {reason}"),
                );
            }
        }
    }
}

/// Shuts the plugins down: announces `app:shutdown` and waits until every event published so
/// far is delivered, then calls `on_disable` in reverse load order, each followed by
/// `plugin:disabled` (delivered to the plugins still enabled). Failures are logged;
/// shutdown goes on.
pub async fn disable_plugins(registry: &mut PluginRegistry, config: &Config, events: &EventBus) {
    events
        .emit_now(HOST_EMITTER, "app:shutdown", &json!({}))
        .await;
    flush_within(events, config.shutdown_timeout).await;
    for index in registry.load_order.clone().into_iter().rev() {
        let record = &mut registry.records[index];
        if record.state != PluginState::Enabled {
            continue;
        }
        let id = record.label().to_owned();
        // Its pending events handled and its delivery ended first: no on_event after (or
        // during) on_disable.
        events.retire(&id, config.shutdown_timeout).await;
        let module = record
            .library
            .as_ref()
            .expect("enabled has a library")
            .module;
        match run_hook_in_unit(events, (module.on_disable())(), config.hook_timeout).await {
            Ok(()) => tracing::info!(plugin = %id, "Disabled plugin {id}"),
            Err(reason) => {
                tracing::warn!(plugin = %id, "on_disable of plugin {id} failed: {reason}")
            }
        }
        record.state = PluginState::Disabled;
        record.reason = Some("the host shut down".to_owned());
        events
            .emit_now(HOST_EMITTER, "plugin:disabled", &json!({"plugin_id": id}))
            .await;
        flush_within(events, config.shutdown_timeout).await;
    }
}

/// Waits for the subscribers to handle what is in the outbox, but not forever.
async fn flush_within(events: &EventBus, patience: Duration) {
    if tokio::time::timeout(patience, events.flush())
        .await
        .is_err()
    {
        tracing::warn!(
            "pending events were not all delivered within {} s",
            patience.as_secs()
        );
    }
}

/// Runs one lifecycle hook in a unit of work of its own: the host-service calls it makes
/// commit together if it succeeds and roll back if it fails.
async fn run_hook_in_unit(
    events: &EventBus,
    hook: FfiFuture<RResult<(), PluginFault>>,
    timeout: Duration,
) -> Result<(), String> {
    let unit = Arc::new(UnitOfWork::new(events.database()));
    let outcome = unit.run_ambient(run_hook(hook, timeout)).await;
    match events.settle(&unit, outcome.is_ok()).await {
        Ok(_) => outcome,
        Err(error) => Err(format!("its changes could not be committed: {error}")),
    }
}

/// Awaits one hook under a timeout, turning every way it can fail into a reason.
pub async fn run_hook(
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
        _ => fault.message.to_string(),
    }
}

//! The admin API's view of the plugins: one JSON object per library found, used by
//! `GET /api/v1/plugins[/{id}]` and by `pixsim7 plugins --json`.

use std::collections::HashMap;

use actix_web::web::Bytes;
use serde_json::{json, Value};

use crate::{
    events::EventBus,
    plugin_health::PluginHealth,
    plugins::{PluginRecord, PluginRegistry},
};

/// The JSON object describing one library: manifest fields, state, reason, order, routes.
pub fn plugin_json(record: &PluginRecord) -> Value {
    let manifest = record.descriptor.as_ref().map(|d| &d.manifest);
    json!({
        "id": manifest.map(|m| &m.id),
        "name": manifest.map(|m| &m.name),
        "version": manifest.map(|m| &m.version),
        "description": manifest.map(|m| &m.description),
        "state": record.state.as_str(),
        "reason": record.reason,
        "order": record.order,
        "file": record.file,
        "sha256": record.sha256,
        "abi_version": record.section.as_ref().map(|s| &s.abi_version),
        "prefix": manifest.map(|m| &m.prefix),
        "tags": manifest.map_or(&[][..], |m| &m.tags),
        "dependencies": manifest.map_or(&[][..], |m| &m.dependencies),
        "permissions": manifest.map_or(&[][..], |m| &m.permissions),
        "optional_permissions": manifest.map_or(&[][..], |m| &m.optional_permissions),
        "granted_permissions": record.granted,
        "denied_permissions": record.denied,
        "subscriptions": manifest.map_or(&[][..], |m| &m.subscriptions),
        "subscriptions_active": record.subscriptions_active(),
        "emits": manifest.map_or(&[][..], |m| &m.emits),
        "required": manifest.is_some_and(|m| m.required),
        "routes": record.full_routes().into_iter().map(|(method, path, access)| {
            json!({"method": method.as_str(), "path": path, "access": access})
        }).collect::<Vec<_>>(),
    })
}

/// Every record as JSON, in file-name order.
pub fn plugins_json(registry: &PluginRegistry) -> Value {
    Value::Array(registry.records.iter().map(plugin_json).collect())
}

/// The admin API's answers, rendered once when serving starts; read live are the event
/// counters and quarantines (a quarantined plugin shows state `quarantined`, its reason and
/// `quarantined_since`, seconds since the Unix epoch).
pub struct AdminSnapshot {
    list: Bytes,
    list_json: Vec<Value>,
    by_id: HashMap<String, Value>,
}

/// Overlays a plugin's live quarantine on its JSON.
fn overlay_health(plugin: &mut Value, health: &PluginHealth) {
    let Some(index) = plugin["id"].as_str().and_then(|id| health.index_of(id)) else {
        return;
    };
    if plugin["state"] != "enabled" {
        return;
    }
    if let Some((reason, since)) = health.quarantine(index) {
        plugin["state"] = json!("quarantined");
        plugin["reason"] = json!(reason);
        plugin["quarantined_since"] = json!(since);
    }
}

impl AdminSnapshot {
    /// Renders the registry.
    pub fn new(registry: &PluginRegistry) -> AdminSnapshot {
        let by_id = registry
            .records
            .iter()
            .filter_map(|record| {
                let id = record.id()?.to_owned();
                // A duplicate id is listed, but `/plugins/{id}` shows the one that owns it.
                let owner = registry.find(&id)?;
                std::ptr::eq(owner, record).then(|| (id, plugin_json(record)))
            })
            .collect();
        let list_json = registry.records.iter().map(plugin_json).collect();
        AdminSnapshot {
            list: Bytes::from(plugins_json(registry).to_string()),
            list_json,
            by_id,
        }
    }

    /// `GET /api/v1/plugins`.
    pub fn list(&self, health: &PluginHealth) -> Bytes {
        if !health.any_quarantined() {
            return self.list.clone();
        }
        let mut list = self.list_json.clone();
        for plugin in &mut list {
            overlay_health(plugin, health);
        }
        Bytes::from(Value::Array(list).to_string())
    }

    /// The state and reason of plugin `id` at startup, if there is one.
    pub fn state_of(&self, id: &str) -> Option<(String, Option<String>)> {
        let plugin = self.by_id.get(id)?;
        Some((
            plugin["state"].as_str().unwrap_or_default().to_owned(),
            plugin["reason"].as_str().map(str::to_owned),
        ))
    }

    /// `GET /api/v1/plugins/{id}`, with the plugin's event counters per topic
    /// (`emitted`, `delivered`, `failed`) and, for a subscriber, `event_lag`: the events in
    /// the outbox it subscribes to and has not handled yet (`null` if the database cannot
    /// say right now).
    pub async fn get(&self, id: &str, events: &EventBus, health: &PluginHealth) -> Option<Bytes> {
        let mut plugin = self.by_id.get(id)?.clone();
        overlay_health(&mut plugin, health);
        plugin["events"] = json!(events.counters(id));
        match events.lag(id).await {
            Ok(None) => {}
            Ok(Some(lag)) => plugin["event_lag"] = json!(lag),
            Err(error) => {
                tracing::warn!(plugin = id, error = %error, "cannot count the pending events of plugin {id}: {error}");
                plugin["event_lag"] = Value::Null;
            }
        }
        Some(Bytes::from(plugin.to_string()))
    }
}

//! `pixsim7 plugins`: what the host would do with the plugin directory, without serving
//! (like `nginx -t`). Text for people, `--json` for machines.

use std::fmt::Write;

use crate::{
    admin::plugins_json,
    plugins::{PluginRegistry, PluginState},
};

/// Whether any plugin would fail or be skipped.
pub fn has_failures(registry: &PluginRegistry) -> bool {
    registry
        .records
        .iter()
        .any(|r| matches!(r.state, PluginState::Failed | PluginState::Skipped))
}

/// The machine-readable report.
pub fn json_report(registry: &PluginRegistry) -> String {
    let order: Vec<&str> = registry
        .load_order
        .iter()
        .map(|&i| registry.records[i].label())
        .collect();
    let report = serde_json::json!({
        "plugin_dir": registry.plugin_dir.display().to_string(),
        "plugins": plugins_json(registry),
        "load_order": order,
    });
    serde_json::to_string_pretty(&report).expect("JSON values serialize")
}

/// The human-readable report.
pub fn text_report(registry: &PluginRegistry) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} plugin libraries in {}",
        registry.records.len(),
        registry.plugin_dir.display()
    );
    for record in &registry.records {
        let _ = writeln!(out);
        let title = match &record.descriptor {
            Some(d) => format!("{} {} ({})", d.manifest.id, d.manifest.version, record.file),
            None => record.file.clone(),
        };
        let state = match (record.state, record.order) {
            (PluginState::Pending, Some(order)) => format!("would load (#{order})"),
            (state, _) => state.to_string(),
        };
        let _ = writeln!(out, "{title}: {state}");
        if let Some(reason) = &record.reason {
            let _ = writeln!(out, "  reason:       {reason}");
        }
        if let Some(sha256) = &record.sha256 {
            let _ = writeln!(out, "  sha256:       {sha256}");
        }
        let Some(descriptor) = &record.descriptor else {
            continue;
        };
        let manifest = &descriptor.manifest;
        let _ = writeln!(out, "  name:         {}", manifest.name);
        if let Some(section) = &record.section {
            let _ = writeln!(out, "  plugin ABI:   {}", section.abi_version);
        }
        if !manifest.description.is_empty() {
            let _ = writeln!(out, "  description:  {}", manifest.description);
        }
        let list = |items: Vec<String>| {
            if items.is_empty() {
                "-".to_owned()
            } else {
                items.join(", ")
            }
        };
        let _ = writeln!(out, "  prefix:       {}", manifest.prefix);
        let _ = writeln!(out, "  tags:         {}", list(manifest.tags.clone()));
        let _ = writeln!(
            out,
            "  dependencies: {}",
            list(
                manifest
                    .dependencies
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            )
        );
        let _ = writeln!(
            out,
            "  permissions:  {}",
            list(manifest.permissions.clone())
        );
        if !manifest.optional_permissions.is_empty() {
            let _ = writeln!(
                out,
                "  optional:     {}",
                list(manifest.optional_permissions.clone())
            );
        }
        let _ = writeln!(out, "  granted:      {}", list(record.granted.clone()));
        if !record.denied.is_empty() {
            let _ = writeln!(out, "  denied:       {}", list(record.denied.clone()));
        }
        if !manifest.subscriptions.is_empty() {
            let active = if record.subscriptions_active() {
                ""
            } else {
                " (inactive: lacks event:subscribe)"
            };
            let _ = writeln!(
                out,
                "  subscribes:   {}{active}",
                list(manifest.subscriptions.clone())
            );
        }
        if manifest.required {
            let _ = writeln!(out, "  required:     yes (its failure stops startup)");
        }
        for (method, path, access) in record.full_routes() {
            let _ = writeln!(
                out,
                "  route:        {method} {path} ({})",
                access_label(access)
            );
        }
    }
    let order: Vec<&str> = registry
        .load_order
        .iter()
        .map(|&i| registry.records[i].label())
        .collect();
    let _ = writeln!(out, "\nLoad order: [{}]", order.join(", "));
    let failures = registry
        .records
        .iter()
        .filter(|r| matches!(r.state, PluginState::Failed | PluginState::Skipped))
        .count();
    if failures > 0 {
        let _ = writeln!(out, "{failures} plugin(s) would not load");
    }
    out
}

fn access_label(access: plugin_api::Access) -> &'static str {
    match access {
        plugin_api::Access::Public => "public",
        plugin_api::Access::User => "signed-in users",
        plugin_api::Access::Admin => "admins",
    }
}

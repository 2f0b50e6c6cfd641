//! The plugin registry: every library found in the plugin directory, what it says about
//! itself, and its state, with the reason when it is not serving.
//!
//! `PluginRegistry::discover` runs the static half of the startup pipeline from the files
//! alone: scan → permissions → read and hash → file checks → descriptor section → pins →
//! validate → duplicate ids → disabled → permission policy → dependency order (semver,
//! cycles, cascade) → route conflicts. It opens no library, so no plugin code runs:
//! `pixsim7 plugins` is this alone. [`PluginRegistry::open_libraries`] then opens the
//! private copies of the plugins that will load, in load order.
//! Every failure is logged once, at warn, by [`PluginRegistry::set_outcome`].

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use anyhow::Context;
use plugin_api::{PluginDescriptor, SectionDescriptor};

use super::{
    discovery::scan_plugin_dir,
    file_index::{FileIndex, FileStamp, KnownFile},
    image::inspect_library,
    library::{load_plugin_library, read_section, LoadError, PluginLibrary},
    lock::{sha256_hex, LockedPlugin, PluginLock},
    private_copy::{PrivateCopies, CACHE_DIR_NAME},
    resolve::resolve_load_order,
    trust,
};
use crate::{
    config::Config,
    routing::{full_path, RouteTable},
};

/// Where a plugin stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginState {
    /// Passed every static check; will be loaded (shown as "would load").
    Pending,
    /// `on_load` succeeded.
    Loaded,
    /// `on_enable` succeeded; its routes are served.
    Enabled,
    /// Switched off by its manifest or the operator.
    Disabled,
    /// Something about this plugin itself is wrong.
    Failed,
    /// Not loaded because a dependency is unavailable.
    Skipped,
}

impl PluginState {
    /// The name used by the admin API and `pixsim7 plugins --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Pending => "would load",
            PluginState::Loaded => "loaded",
            PluginState::Enabled => "enabled",
            PluginState::Disabled => "disabled",
            PluginState::Failed => "failed",
            PluginState::Skipped => "skipped",
        }
    }

    /// Whether a plugin in this state is (or will be) available to its dependents.
    pub fn is_available(self) -> bool {
        matches!(
            self,
            PluginState::Pending | PluginState::Loaded | PluginState::Enabled
        )
    }
}

impl fmt::Display for PluginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One library found in the plugin directory.
pub struct PluginRecord {
    /// The file name, e.g. `libdice_game.so`.
    pub file: String,
    /// The SHA-256 of the file's content (lower-case hex), when it could be read.
    pub sha256: Option<String>,
    /// The file's descriptor section, when it has a readable one.
    pub section: Option<SectionDescriptor>,
    /// The file to copy and its size when it was checked (the symlink's target, for a
    /// symlink), for the plugins that will load.
    source: Option<(PathBuf, u64)>,
    /// The opened library, once its private copy was opened.
    pub library: Option<PluginLibrary>,
    /// What the plugin says about itself: from its descriptor section, then (once opened)
    /// from the library, with schemas and migrations.
    pub descriptor: Option<PluginDescriptor>,
    /// The parsed manifest version, once validated.
    pub version: Option<semver::Version>,
    /// Current state.
    pub state: PluginState,
    /// Why the plugin is disabled, failed or skipped.
    pub reason: Option<String>,
    /// Position in the load order (1 = first), for plugins that are (or would be) loaded.
    pub order: Option<usize>,
    /// Permissions the plugin holds: what it asked for, less what the operator denied.
    pub granted: Vec<String>,
    /// Permissions it asked for that the operator denied.
    pub denied: Vec<String>,
}

impl PluginRecord {
    /// The plugin id, when the manifest could be read.
    pub fn id(&self) -> Option<&str> {
        self.descriptor.as_ref().map(|d| d.manifest.id.as_str())
    }

    /// The id when known, else the file name: how log lines name this plugin.
    pub fn label(&self) -> &str {
        self.id().unwrap_or(&self.file)
    }

    /// Whether the plugin's subscriptions are in force (it has some and holds
    /// `event:subscribe`).
    pub fn subscriptions_active(&self) -> bool {
        self.descriptor
            .as_ref()
            .is_some_and(|d| !d.manifest.subscriptions.is_empty())
            && self.granted.iter().any(|p| p == "event:subscribe")
    }

    /// The plugin's routes with their full paths and who may call them, in route-table
    /// order.
    pub fn full_routes(&self) -> Vec<(plugin_api::Method, String, plugin_api::Access)> {
        self.descriptor.as_ref().map_or_else(Vec::new, |d| {
            d.routes
                .iter()
                .map(|r| (r.method, full_path(&d.manifest.prefix, &r.path), r.access))
                .collect()
        })
    }
}

/// Every plugin found, and the load order of those that can load.
pub struct PluginRegistry {
    /// The directory scanned.
    pub plugin_dir: PathBuf,
    /// One record per library file, in file-name order.
    pub records: Vec<PluginRecord>,
    /// Indices into `records`, dependencies first.
    pub load_order: Vec<usize>,
    by_id: BTreeMap<String, usize>,
    /// What earlier starts learnt from unchanged files, and what this one learnt.
    file_index: FileIndex,
}

impl PluginRegistry {
    /// Scans the plugin directory and runs every static check, from the files alone: no
    /// library is opened, so none of their code runs.
    pub fn discover(config: &Config) -> anyhow::Result<PluginRegistry> {
        PluginRegistry::discover_with_lock(config, true)
    }

    /// [`PluginRegistry::discover`], with the configured lock file applied or not (`pixsim7
    /// plugins lock` reads the directory without the pins it is about to write).
    pub fn discover_with_lock(config: &Config, apply_lock: bool) -> anyhow::Result<PluginRegistry> {
        let lock = match (&config.plugins_lock, apply_lock) {
            (Some(path), true) => Some((path.clone(), PluginLock::read(path)?)),
            _ => None,
        };
        let files = scan_plugin_dir(&config.plugin_dir).with_context(|| {
            format!(
                "cannot read plugin directory {}",
                config.plugin_dir.display()
            )
        })?;
        tracing::info!(
            count = files.len(),
            dir = %config.plugin_dir.display(),
            "Discovered {} plugins",
            files.len()
        );
        let mut registry = PluginRegistry {
            plugin_dir: config.plugin_dir.clone(),
            records: Vec::with_capacity(files.len()),
            load_order: Vec::new(),
            by_id: BTreeMap::new(),
            file_index: FileIndex::load(&config.data_dir.join(CACHE_DIR_NAME)),
        };
        let directory_problem = match trust::check_directory(&config.plugin_dir) {
            Ok(()) => None,
            Err(reason) if config.allow_insecure_permissions => {
                tracing::warn!(
                    "{} (accepted: [plugins] allow_insecure_permissions = true; never in production)",
                    trust::without_hint(&reason)
                );
                None
            }
            Err(reason) => {
                tracing::warn!("{reason}");
                Some(reason)
            }
        };
        for path in &files {
            registry.read_file(config, path, directory_problem.as_deref(), lock.as_ref());
        }
        registry.apply_enabled_flags(config);
        registry.apply_permission_policy(config);
        registry.resolve_order();
        registry.check_routes();
        let order: Vec<&str> = registry
            .load_order
            .iter()
            .map(|&i| registry.records[i].label())
            .collect();
        tracing::info!(order = ?order, "Plugin load order: [{}]", order.join(", "));
        Ok(registry)
    }

    /// Reads one library file without opening it: permissions, content and hash, file
    /// checks, descriptor section, pin, manifest validation and duplicate ids.
    fn read_file(
        &mut self,
        config: &Config,
        path: &Path,
        directory_problem: Option<&str>,
        lock: Option<&(PathBuf, PluginLock)>,
    ) {
        let file = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let index = self.records.len();
        self.records.push(PluginRecord {
            file: file.clone(),
            sha256: None,
            section: None,
            source: None,
            library: None,
            descriptor: None,
            version: None,
            state: PluginState::Pending,
            reason: None,
            order: None,
            granted: Vec::new(),
            denied: Vec::new(),
        });
        if let Some(reason) = directory_problem {
            return self.set_outcome(index, PluginState::Failed, reason.to_owned());
        }
        let readable = match trust::check_library(
            &config.plugin_dir,
            path,
            config.allow_insecure_permissions,
        ) {
            Ok((readable, warnings)) => {
                for warning in warnings {
                    tracing::warn!(
                        file = %file,
                        "{} (accepted: [plugins] allow_insecure_permissions = true; never in production)",
                        trust::without_hint(&warning)
                    );
                }
                readable
            }
            Err(reason) => return self.set_outcome(index, PluginState::Failed, reason),
        };
        let (sha256, size, section) = match self.read_checked(&readable) {
            Ok(read) => read,
            Err(reason) => return self.set_outcome(index, PluginState::Failed, reason),
        };
        self.records[index].sha256 = Some(sha256.clone());
        let section = match section {
            Ok(section) => section,
            Err(error) => {
                // A pinned file whose content changed is first of all that, wherever the
                // change fell: say so, naming both hashes.
                let reason = lock
                    .and_then(|(lock_path, lock)| {
                        let pin = lock
                            .plugins
                            .iter()
                            .find(|pin| pin.file == file && pin.sha256 != sha256)?;
                        lock.verdict(lock_path, &pin.id, &file, &sha256).err()
                    })
                    .unwrap_or_else(|| error.to_string());
                return self.set_outcome(index, PluginState::Failed, reason);
            }
        };
        let id = section.manifest.id.clone();
        // Judged before the id is registered: an unpinned file cannot take the id of the
        // pinned one (which would then fail as a duplicate).
        if let Some((lock_path, lock)) = lock {
            if let Err(reason) = lock.verdict(lock_path, &id, &file, &sha256) {
                let record = &mut self.records[index];
                record.descriptor = Some(section.to_descriptor());
                record.section = Some(section);
                return self.set_outcome(index, PluginState::Failed, reason);
            }
        }
        let descriptor = section.to_descriptor();
        let validation = descriptor.validate();
        let record = &mut self.records[index];
        record.version = semver::Version::parse(&descriptor.manifest.version).ok();
        record.descriptor = Some(descriptor);
        record.section = Some(section);
        record.source = Some((readable, size));
        if let Some(&first) = self.by_id.get(&id) {
            let reason = format!(
                "duplicate plugin id {id:?}: {} already provides it",
                self.records[first].file
            );
            return self.set_outcome(index, PluginState::Failed, reason);
        }
        // Registered even when invalid, so dependents learn that it failed to load rather
        // than that it is missing.
        self.by_id.insert(id, index);
        if let Err(errors) = validation {
            self.set_outcome(index, PluginState::Failed, errors.to_string());
        }
    }

    /// The SHA-256, size and descriptor section of the file at `path` (canonical): from the
    /// file index when the file has not changed since an earlier start checked it, else
    /// read, hashed and checked now (and recorded for the next start). Err is a reason the
    /// file cannot be read at all; the inner Err, one it cannot be used as a plugin.
    #[allow(clippy::type_complexity)]
    fn read_checked(
        &mut self,
        path: &Path,
    ) -> Result<(String, u64, Result<SectionDescriptor, LoadError>), String> {
        let metadata = std::fs::metadata(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let stamp = FileStamp::of(&metadata);
        if let Some(known) = stamp.and_then(|stamp| self.file_index.lookup(path, stamp)) {
            let known = known.clone();
            let section = read_section(Some(known.section.as_bytes()));
            let read = (known.sha256.clone(), known.stamp.size(), section);
            self.file_index.record(path.to_path_buf(), known);
            return Ok(read);
        }
        let bytes = std::fs::read(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let sha256 = sha256_hex(&bytes);
        let size = bytes.len() as u64;
        let image = match inspect_library(&bytes) {
            Ok(image) => image,
            Err(problem) => {
                return Ok((
                    sha256,
                    size,
                    Err(LoadError::NotALibrary(problem.to_string())),
                ))
            }
        };
        let section_text = image
            .descriptor
            .and_then(|section| std::str::from_utf8(section).ok());
        if let (Some(stamp), Some(text)) = (stamp.filter(|s| s.size() == size), section_text) {
            let known = KnownFile {
                stamp,
                sha256: sha256.clone(),
                section: text.to_owned(),
            };
            self.file_index.record(path.to_path_buf(), known);
        }
        Ok((sha256, size, read_section(image.descriptor)))
    }

    /// Opens the plugins that will load, in load order: writes each one's private copy
    /// (named by its SHA-256, under the data directory), opens that copy, and checks that
    /// the live descriptor says what the section said. A plugin whose dependency did not
    /// open is skipped, unopened. Files in the plugin directory are never opened.
    pub fn open_libraries(&mut self, config: &Config) -> anyhow::Result<()> {
        let mut copies = PrivateCopies::open(&config.data_dir).map_err(anyhow::Error::msg)?;
        for index in self.load_order.clone() {
            if self.records[index].state != PluginState::Pending {
                continue;
            }
            if let Some(reason) = self.unmet_dependency(index) {
                self.set_outcome(index, PluginState::Skipped, reason);
                continue;
            }
            if let Err(reason) = self.open_library(index, &mut copies) {
                self.set_outcome(index, PluginState::Failed, reason);
            }
        }
        copies.remove_unused();
        self.file_index.save(copies.dir());
        Ok(())
    }

    fn open_library(&mut self, index: usize, copies: &mut PrivateCopies) -> Result<(), String> {
        let record = &mut self.records[index];
        let (Some((source, size)), Some(sha256), Some(section)) =
            (&record.source, &record.sha256, &record.section)
        else {
            return Err("the library was not read".to_owned());
        };
        let copy = copies.copy_of(sha256, *size, source)?;
        let (library, descriptor) =
            load_plugin_library(&copy, section).map_err(|error| error.to_string())?;
        // The section was validated; the live descriptor adds the migrations.
        descriptor.validate().map_err(|errors| errors.to_string())?;
        record.library = Some(library);
        record.descriptor = Some(descriptor);
        Ok(())
    }

    /// Grants each plugin what it asked for less what the operator denies (`[permissions]
    /// deny` for all, `[plugins.<id>] deny` for one). A denied permission the plugin needs
    /// (not listed as optional) fails it.
    fn apply_permission_policy(&mut self, config: &Config) {
        for index in 0..self.records.len() {
            let record = &mut self.records[index];
            let Some(descriptor) = &record.descriptor else {
                continue;
            };
            let manifest = &descriptor.manifest;
            let plugin_deny = config.plugin(&manifest.id).deny;
            let denied_by = |permission: &str| {
                if plugin_deny.iter().any(|p| p == permission) {
                    Some(format!("[plugins.{}] deny", manifest.id))
                } else if config.denied_permissions.iter().any(|p| p == permission) {
                    Some("[permissions] deny".to_owned())
                } else {
                    None
                }
            };
            let mut fatal = None;
            for permission in manifest.requested_permissions() {
                match denied_by(permission) {
                    None => record.granted.push(permission.to_owned()),
                    Some(source) => {
                        record.denied.push(permission.to_owned());
                        if fatal.is_none() && manifest.requires_permission(permission) {
                            fatal = Some(format!(
                                "permission {permission} is denied by the operator ({source}), and the plugin \
                                 needs it (it would load without it if its manifest listed it under optional_permissions)"
                            ));
                        }
                    }
                }
            }
            if let (Some(reason), PluginState::Pending) = (fatal, record.state) {
                self.set_outcome(index, PluginState::Failed, reason);
            }
        }
    }

    fn apply_enabled_flags(&mut self, config: &Config) {
        for id in config.plugins.keys() {
            if self.find(id).is_none() {
                tracing::warn!(
                    plugin = %id,
                    "the configuration has a [plugins.{id}] table, but no plugin {id} was found in {}",
                    self.plugin_dir.display()
                );
            }
        }
        for index in 0..self.records.len() {
            let record = &self.records[index];
            let (Some(descriptor), PluginState::Pending) = (&record.descriptor, record.state)
            else {
                continue;
            };
            let id = &descriptor.manifest.id;
            let reason = match (config.plugin(id).enabled, descriptor.manifest.enabled) {
                (Some(false), _) => {
                    format!("disabled in the configuration ([plugins.{id}] enabled = false)")
                }
                (None, false) => "disabled in its manifest".to_owned(),
                _ => continue,
            };
            self.set_outcome(index, PluginState::Disabled, reason);
        }
    }

    /// Orders the plugins still pending, then walks that order checking each dependency;
    /// a plugin whose dependency is missing, unavailable or too old is skipped, and that
    /// cascades because dependents come later in the order.
    fn resolve_order(&mut self) {
        let graph: BTreeMap<String, Vec<String>> = self
            .pending()
            .map(|record| {
                let manifest = &record
                    .descriptor
                    .as_ref()
                    .expect("pending has a manifest")
                    .manifest;
                (
                    manifest.id.clone(),
                    manifest.dependencies.iter().map(|d| d.id.clone()).collect(),
                )
            })
            .collect();
        let resolution = resolve_load_order(&graph);
        for (id, cycle) in &resolution.cycles {
            self.set_outcome(self.by_id[id], PluginState::Skipped, cycle.clone());
        }
        for (id, dependency) in &resolution.blocked {
            let reason = format!("requires {dependency}, which was skipped");
            self.set_outcome(self.by_id[id], PluginState::Skipped, reason);
        }
        for id in &resolution.order {
            let index = self.by_id[id];
            match self.unmet_dependency(index) {
                Some(reason) => self.set_outcome(index, PluginState::Skipped, reason),
                None => self.load_order.push(index),
            }
        }
    }

    /// Registers each plugin's routes in load order; a conflict fails the later plugin.
    fn check_routes(&mut self) {
        let mut table = RouteTable::with_host_routes();
        for position in 0..self.load_order.len() {
            let index = self.load_order[position];
            if let Some(reason) = self.unmet_dependency(index) {
                self.set_outcome(index, PluginState::Skipped, reason);
                continue;
            }
            let record = &self.records[index];
            let routes = record.full_routes();
            if let Err(reason) = table.add_plugin_routes(record.label(), index, &routes) {
                self.set_outcome(index, PluginState::Failed, reason);
            }
        }
        self.load_order
            .retain(|&i| self.records[i].state == PluginState::Pending);
        for (position, &index) in self.load_order.iter().enumerate() {
            self.records[index].order = Some(position + 1);
        }
    }

    fn pending(&self) -> impl Iterator<Item = &PluginRecord> {
        self.records
            .iter()
            .filter(|r| r.state == PluginState::Pending)
    }

    /// The first dependency of plugin `index` that is not available, as a reason.
    pub fn unmet_dependency(&self, index: usize) -> Option<String> {
        let manifest = &self.records[index].descriptor.as_ref()?.manifest;
        for dependency in &manifest.dependencies {
            let Some(&dep_index) = self.by_id.get(&dependency.id) else {
                return Some(format!("requires {}, which is not loaded", dependency.id));
            };
            let dep = &self.records[dep_index];
            let reason = match dep.state {
                PluginState::Disabled => format!("depends on {}, which is disabled", dependency.id),
                PluginState::Failed => format!("requires {}, which failed to load", dependency.id),
                PluginState::Skipped => format!("requires {}, which was skipped", dependency.id),
                _ => {
                    let requirement = dependency
                        .requirement
                        .as_deref()
                        .and_then(|r| semver::VersionReq::parse(r).ok());
                    match (requirement, &dep.version) {
                        (Some(req), Some(version)) if !req.matches(version) => format!(
                            "requires {} {req}, but {} {version} is installed",
                            dependency.id, dependency.id
                        ),
                        _ => continue,
                    }
                }
            };
            return Some(reason);
        }
        None
    }

    /// Moves plugin `index` to `state`; for failed and skipped plugins, logs the one warn
    /// line an operator sees.
    pub fn set_outcome(&mut self, index: usize, state: PluginState, reason: String) {
        let record = &mut self.records[index];
        match state {
            PluginState::Failed => tracing::warn!(
                plugin = record.id(),
                file = %record.file,
                reason = %reason,
                "Failed to load plugin {}: {reason}",
                record.label()
            ),
            PluginState::Skipped => tracing::warn!(
                plugin = record.id(),
                file = %record.file,
                reason = %reason,
                "Skipped plugin {}: {reason}",
                record.label()
            ),
            PluginState::Disabled => tracing::info!(
                plugin = record.id(),
                file = %record.file,
                "Plugin {} is {reason}",
                record.label()
            ),
            _ => {}
        }
        record.state = state;
        record.reason = Some(reason);
        if !state.is_available() {
            record.order = None;
        }
    }

    /// The reason startup must stop: a required plugin that failed or was skipped, or under
    /// `strict`, any plugin that did.
    pub fn fatal_failure(&self, strict: bool) -> Option<String> {
        self.records
            .iter()
            .filter(|r| matches!(r.state, PluginState::Failed | PluginState::Skipped))
            .find_map(|record| {
                let required = record
                    .descriptor
                    .as_ref()
                    .is_some_and(|d| d.manifest.required);
                let reason = record.reason.as_deref().unwrap_or("unknown reason");
                if required {
                    Some(format!(
                        "required plugin {} {}: {reason}",
                        record.label(),
                        record.state
                    ))
                } else if strict {
                    Some(format!(
                        "strict mode: plugin {} {}: {reason}",
                        record.label(),
                        record.state
                    ))
                } else {
                    None
                }
            })
    }

    /// A lock file pinning every library whose descriptor section could be read, whatever
    /// its state (a disabled plugin pinned now may be enabled later without a new lock).
    pub fn pins(&self) -> PluginLock {
        let mut plugins: Vec<LockedPlugin> = self
            .records
            .iter()
            .filter_map(|record| {
                let section = record.section.as_ref()?;
                Some(LockedPlugin {
                    id: section.manifest.id.clone(),
                    version: section.manifest.version.clone(),
                    file: record.file.clone(),
                    sha256: record.sha256.clone()?,
                })
            })
            .collect();
        plugins.sort_by(|a, b| a.id.cmp(&b.id));
        plugins.dedup_by(|a, b| a.id == b.id);
        PluginLock { plugins }
    }

    /// The record of the plugin with this id (the one that holds the id; else, for a
    /// library refused by the pins, which never holds one, the first that claims it).
    pub fn find(&self, id: &str) -> Option<&PluginRecord> {
        match self.by_id.get(id) {
            Some(&index) => Some(&self.records[index]),
            None => self.records.iter().find(|record| record.id() == Some(id)),
        }
    }
}

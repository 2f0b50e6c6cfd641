//! Quarantine: the live health of each serving plugin. Stalls (from the watchdog) and panics
//! are incidents; a plugin with `quarantine_after` incidents within `quarantine_window` is
//! quarantined: its routes answer 503 with `Retry-After` until the host restarts or an admin
//! re-enables it (`POST /api/v1/plugins/{id}/enable`).

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::{Instant, SystemTime},
};

use crate::{
    config::WatchdogSettings,
    metrics::{metrics, PluginLabels},
    sync::lock,
};

/// What went wrong once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentKind {
    /// A handler held its worker thread past the threshold.
    Stall,
    /// A handler (or event handler) panicked.
    Panic,
}

impl IncidentKind {
    fn as_str(self) -> &'static str {
        match self {
            IncidentKind::Stall => "stall",
            IncidentKind::Panic => "panic",
        }
    }
}

/// One plugin's live state.
struct PluginHealthRecord {
    id: String,
    /// Read on every request: the only hot-path access.
    quarantined: AtomicBool,
    detail: Mutex<HealthDetail>,
}

#[derive(Default)]
struct HealthDetail {
    /// Recent incidents, oldest first, none older than the window.
    incidents: VecDeque<Instant>,
    /// Why, and since when (for the admin API), while quarantined.
    reason: Option<String>,
    since: Option<SystemTime>,
}

/// What `enable` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Reenabled {
    /// It was quarantined and now serves again.
    Yes,
    /// It was serving already.
    AlreadyServing,
}

/// The health of every serving plugin, indexed like `ServingState::plugins`.
pub struct PluginHealth {
    plugins: Vec<PluginHealthRecord>,
    policy: WatchdogSettings,
}

impl PluginHealth {
    /// All healthy.
    pub fn new(ids: impl IntoIterator<Item = String>, policy: WatchdogSettings) -> PluginHealth {
        PluginHealth {
            plugins: ids
                .into_iter()
                .map(|id| PluginHealthRecord {
                    id,
                    quarantined: AtomicBool::new(false),
                    detail: Mutex::default(),
                })
                .collect(),
            policy,
        }
    }

    /// Whether the plugin's routes answer 503 now.
    pub fn is_quarantined(&self, plugin: usize) -> bool {
        self.plugins[plugin].quarantined.load(Ordering::Relaxed)
    }

    /// The `Retry-After` of a quarantined plugin's answers, in seconds.
    pub fn retry_after_secs(&self) -> u64 {
        self.policy.retry_after.as_secs()
    }

    /// The index of the plugin `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.plugins.iter().position(|p| p.id == id)
    }

    /// Why the plugin is quarantined and since when (seconds since the Unix epoch), if it is.
    pub fn quarantine(&self, plugin: usize) -> Option<(String, u64)> {
        let detail = lock(&self.plugins[plugin].detail);
        let reason = detail.reason.clone()?;
        let since = detail
            .since
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        Some((reason, since))
    }

    /// Whether any plugin is quarantined now.
    pub fn any_quarantined(&self) -> bool {
        self.plugins
            .iter()
            .any(|p| p.quarantined.load(Ordering::Relaxed))
    }

    /// Records an incident (`what` says what happened, for the reason); quarantines the
    /// plugin when the window now holds enough of them. Whether this quarantined it.
    pub fn record(&self, plugin: usize, kind: IncidentKind, what: &str) -> bool {
        let Some(record) = self.plugins.get(plugin) else {
            return false;
        };
        if self.policy.quarantine_after == 0 {
            return false;
        }
        let now = Instant::now();
        let mut detail = lock(&record.detail);
        while detail
            .incidents
            .front()
            .is_some_and(|&t| now.duration_since(t) > self.policy.quarantine_window)
        {
            detail.incidents.pop_front();
        }
        detail.incidents.push_back(now);
        let count = detail.incidents.len();
        if record.quarantined.load(Ordering::Relaxed)
            || count < self.policy.quarantine_after as usize
        {
            return false;
        }
        let reason = format!(
            "quarantined after {count} stalls or panics within {} s; the last, a {}: {what}",
            self.policy.quarantine_window.as_secs(),
            kind.as_str()
        );
        tracing::error!(
            plugin = %record.id,
            incidents = count,
            "plugin {} {reason}; its routes answer 503 until it is re-enabled \
             (POST /api/v1/plugins/{}/enable) or the host restarts",
            record.id,
            record.id
        );
        detail.reason = Some(reason);
        detail.since = Some(SystemTime::now());
        detail.incidents.clear();
        record.quarantined.store(true, Ordering::Relaxed);
        metrics()
            .quarantines
            .get_or_create(&PluginLabels {
                plugin: record.id.clone(),
            })
            .inc();
        true
    }

    /// Lifts a quarantine (an admin's decision, logged with who).
    pub fn enable(&self, plugin: usize, by: &str) -> Reenabled {
        let record = &self.plugins[plugin];
        let mut detail = lock(&record.detail);
        if !record.quarantined.load(Ordering::Relaxed) {
            return Reenabled::AlreadyServing;
        }
        let reason = detail.reason.take().unwrap_or_default();
        detail.since = None;
        detail.incidents.clear();
        record.quarantined.store(false, Ordering::Relaxed);
        tracing::warn!(
            target: "pixsim7::audit",
            plugin = %record.id,
            by,
            "plugin {} re-enabled by {by} (it was {reason})",
            record.id
        );
        Reenabled::Yes
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn health(after: u32) -> PluginHealth {
        PluginHealth::new(
            ["a".to_owned(), "b".to_owned()],
            WatchdogSettings {
                stall_threshold: Duration::from_secs(1),
                quarantine_after: after,
                quarantine_window: Duration::from_secs(60),
                retry_after: Duration::from_secs(30),
            },
        )
    }

    #[test]
    fn the_kth_incident_in_the_window_quarantines_until_enabled() {
        let health = health(3);
        assert!(!health.record(0, IncidentKind::Stall, "GET /x blocked 1.2 s"));
        assert!(!health.record(0, IncidentKind::Panic, "GET /x panicked"));
        assert!(!health.record(1, IncidentKind::Panic, "another plugin's"));
        assert!(!health.is_quarantined(0));
        assert!(health.record(0, IncidentKind::Stall, "GET /y blocked 2.0 s"));
        assert!(health.is_quarantined(0) && !health.is_quarantined(1));
        let (reason, _) = health.quarantine(0).unwrap();
        assert!(
            reason.contains("after 3 stalls or panics within 60 s"),
            "{reason}"
        );
        assert!(reason.contains("a stall: GET /y blocked 2.0 s"), "{reason}");
        assert!(
            !health.record(0, IncidentKind::Stall, "again"),
            "quarantined once"
        );
        assert_eq!(health.enable(0, "user 1"), Reenabled::Yes);
        assert!(!health.is_quarantined(0) && health.quarantine(0).is_none());
        assert_eq!(health.enable(0, "user 1"), Reenabled::AlreadyServing);
        assert!(
            !health.record(0, IncidentKind::Stall, "a fresh count"),
            "the count starts again"
        );
    }

    #[test]
    fn zero_never_quarantines() {
        let health = health(0);
        for _ in 0..10 {
            assert!(!health.record(0, IncidentKind::Panic, "p"));
        }
        assert!(!health.any_quarantined());
    }
}

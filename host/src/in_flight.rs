//! The plugin requests in flight, so that a shutdown that cannot wait for all of them can say
//! which it abandoned. A request is registered when it is matched to a plugin route and
//! leaves when its answer is made or its future is dropped (client gone, or the shutdown
//! deadline). The host's own routes answer at once and are not registered.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use actix_web::http::header::HeaderValue;

use crate::sync::lock;

const SHARDS: usize = 16;

/// One request in flight.
#[derive(Debug, Clone)]
pub struct InFlightRequest {
    /// Its `x-request-id`.
    pub request_id: HeaderValue,
    /// `METHOD /route/template`.
    pub route: String,
    /// The plugin serving it.
    pub plugin: String,
    /// How long it has been in flight.
    pub age: Duration,
}

struct Entry {
    request_id: HeaderValue,
    plugin: usize,
    route: u32,
    started: Instant,
}

/// The registry.
pub struct InFlight {
    next: AtomicU64,
    shards: [Mutex<HashMap<u64, Entry>>; SHARDS],
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight {
            next: AtomicU64::new(0),
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }
}

/// Removes its request from the registry when dropped.
pub struct InFlightGuard<'r> {
    registry: &'r InFlight,
    key: u64,
}

impl InFlight {
    /// Registers route `route` of plugin `plugin` (indices into the serving tables).
    pub fn enter(&self, request_id: &HeaderValue, plugin: usize, route: u32) -> InFlightGuard<'_> {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.shards[key as usize % SHARDS]).insert(
            key,
            Entry {
                request_id: request_id.clone(),
                plugin,
                route,
                started: Instant::now(),
            },
        );
        InFlightGuard {
            registry: self,
            key,
        }
    }

    /// Every request in flight now, oldest first; `describe(plugin, route)` names each.
    pub fn snapshot(
        &self,
        describe: impl Fn(usize, u32) -> (String, String),
    ) -> Vec<InFlightRequest> {
        let now = Instant::now();
        let mut requests: Vec<InFlightRequest> = self
            .shards
            .iter()
            .flat_map(|shard| {
                lock(shard)
                    .values()
                    .map(|entry| {
                        let (plugin, route) = describe(entry.plugin, entry.route);
                        InFlightRequest {
                            request_id: entry.request_id.clone(),
                            route,
                            plugin,
                            age: now.duration_since(entry.started),
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        requests.sort_by_key(|request| std::cmp::Reverse(request.age));
        requests
    }

    /// How many requests are in flight.
    pub fn count(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        lock(&self.registry.shards[self.key as usize % SHARDS]).remove(&self.key);
    }
}

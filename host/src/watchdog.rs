//! The stuck-worker watchdog. A plugin handler runs on the actix worker that received the
//! request; one that blocks (a `std::thread::sleep`, a busy loop) holds that worker and every
//! request queued on it. Each poll of a handler's future marks this thread's slot busy; a
//! watchdog thread looks at the slots and, while a handler is still blocking past the
//! threshold, logs a WARN naming the plugin, the route and how long, counts the stall, and
//! reports it to the plugin's health (which may quarantine the plugin). It cannot unblock
//! the worker: that happens only when the handler returns.

use std::{
    cell::OnceCell,
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering},
        Arc, Condvar, LazyLock, Mutex,
    },
    task::{Context, Poll},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    metrics::{metrics, RouteLabels},
    plugin_health::{IncidentKind, PluginHealth},
    sync::lock,
};

/// One worker thread's record of the handler it is polling right now.
struct WorkerSlot {
    thread: String,
    /// When the current poll began (nanoseconds since [`EPOCH`], plus one); 0 when idle.
    busy_since: AtomicU64,
    /// Counts polls, so a report names one poll.
    generation: AtomicU64,
    /// Which watchdog's tables `plugin` and `route` index.
    owner: AtomicUsize,
    plugin: AtomicU32,
    route: AtomicU32,
    /// The poll the watchdog reported as stalled (its generation; 0 none).
    reported: AtomicU64,
}

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
static SLOTS: Mutex<Vec<Arc<WorkerSlot>>> = Mutex::new(Vec::new());
static NEXT_WATCHDOG: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static SLOT: OnceCell<Arc<WorkerSlot>> = const { OnceCell::new() };
}

fn now_ns() -> u64 {
    u64::try_from(EPOCH.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
}

fn this_thread_slot() -> Arc<WorkerSlot> {
    SLOT.with(|cell| {
        cell.get_or_init(|| {
            let current = std::thread::current();
            let slot = Arc::new(WorkerSlot {
                thread: current
                    .name()
                    .map_or_else(|| format!("{:?}", current.id()), str::to_owned),
                busy_since: AtomicU64::new(0),
                generation: AtomicU64::new(0),
                owner: AtomicUsize::new(0),
                plugin: AtomicU32::new(0),
                route: AtomicU32::new(0),
                reported: AtomicU64::new(0),
            });
            lock(&SLOTS).push(slot.clone());
            slot
        })
        .clone()
    })
}

/// The watchdog of one serving host; its thread stops when this is dropped.
pub struct Watchdog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    id: usize,
    threshold: Duration,
    /// Per plugin, per route: the names a report uses.
    routes: Vec<Vec<RouteLabels>>,
    health: Arc<PluginHealth>,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Watchdog {
    /// Starts the watchdog thread. `routes[plugin][route]` names each handler.
    pub fn start(
        threshold: Duration,
        routes: Vec<Vec<RouteLabels>>,
        health: Arc<PluginHealth>,
    ) -> std::io::Result<Watchdog> {
        let shared = Arc::new(Shared {
            id: NEXT_WATCHDOG.fetch_add(1, Ordering::Relaxed),
            threshold,
            routes,
            health,
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("pixsim7-watchdog".into())
            .spawn({
                let shared = shared.clone();
                move || shared.run()
            })?;
        Ok(Watchdog {
            shared,
            thread: Some(thread),
        })
    }

    /// Wraps a handler's future so that its polls are watched.
    pub fn watch<F: Future + Unpin>(&self, plugin: usize, route: u32, future: F) -> Watched<F> {
        Watched {
            future,
            owner: self.shared.id,
            plugin: plugin as u32,
            route,
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn run(&self) {
        let tick = (self.threshold / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
        // Per slot: the poll last reported, and when (how long blocked) to report it again.
        let mut next_report: HashMap<*const WorkerSlot, (u64, Duration)> = HashMap::new();
        let mut stopped = lock(&self.stop);
        while !*stopped {
            stopped = self
                .wake
                .wait_timeout(stopped, tick)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
            let slots: Vec<Arc<WorkerSlot>> = lock(&SLOTS).clone();
            for slot in &slots {
                self.look_at(slot, &mut next_report);
            }
        }
    }

    fn look_at(
        &self,
        slot: &WorkerSlot,
        next_report: &mut HashMap<*const WorkerSlot, (u64, Duration)>,
    ) {
        let since = slot.busy_since.load(Ordering::Acquire);
        if since == 0 || slot.owner.load(Ordering::Relaxed) != self.id {
            return;
        }
        let generation = slot.generation.load(Ordering::Relaxed);
        let plugin = slot.plugin.load(Ordering::Relaxed) as usize;
        let route = slot.route.load(Ordering::Relaxed) as usize;
        // The loads above must not pass the check below (on weakly ordered CPUs).
        std::sync::atomic::fence(Ordering::Acquire);
        if slot.busy_since.load(Ordering::Acquire) != since {
            return; // that poll ended while we read; the next tick sees the new one
        }
        let blocked = Duration::from_nanos(now_ns().saturating_sub(since));
        if blocked < self.threshold {
            return;
        }
        let Some(labels) = self.routes.get(plugin).and_then(|r| r.get(route)) else {
            return;
        };
        let key: *const WorkerSlot = slot;
        match next_report.get(&key) {
            Some(&(reported, again)) if reported == generation && blocked < again => return,
            Some(&(reported, _)) if reported == generation => {
                tracing::warn!(
                    plugin = %labels.plugin,
                    route = %format!("{} {}", labels.method, labels.route),
                    blocked_ms = blocked.as_millis() as u64,
                    thread = %slot.thread,
                    "plugin {} is still blocking worker thread {} in {} {}: {:.1} s without yielding",
                    labels.plugin,
                    slot.thread,
                    labels.method,
                    labels.route,
                    blocked.as_secs_f64()
                );
                next_report.insert(key, (generation, blocked * 2));
                return;
            }
            _ => {}
        }
        next_report.insert(key, (generation, blocked * 2));
        slot.reported.store(generation, Ordering::Release);
        tracing::warn!(
            plugin = %labels.plugin,
            route = %format!("{} {}", labels.method, labels.route),
            blocked_ms = blocked.as_millis() as u64,
            thread = %slot.thread,
            "plugin {} has blocked worker thread {} for {:.1} s in {} {} without yielding; \
             requests queued on that thread wait until the handler returns",
            labels.plugin,
            slot.thread,
            blocked.as_secs_f64(),
            labels.method,
            labels.route
        );
        metrics().stalls.get_or_create(labels).inc();
        self.health.record(
            plugin,
            IncidentKind::Stall,
            &format!(
                "{} {} blocked its worker thread for over {:.1} s",
                labels.method,
                labels.route,
                blocked.as_secs_f64()
            ),
        );
    }
}

/// A handler's future whose polls mark this thread's slot busy.
pub struct Watched<F> {
    future: F,
    owner: usize,
    plugin: u32,
    route: u32,
}

impl<F: Future + Unpin> Future for Watched<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let future = Pin::new(&mut this.future);
        let slot = this_thread_slot();
        let generation = slot.generation.fetch_add(1, Ordering::Relaxed) + 1;
        slot.owner.store(this.owner, Ordering::Relaxed);
        slot.plugin.store(this.plugin, Ordering::Relaxed);
        slot.route.store(this.route, Ordering::Relaxed);
        let started = now_ns();
        slot.busy_since.store(started, Ordering::Release);
        let result = future.poll(cx);
        slot.busy_since.store(0, Ordering::Release);
        if slot.reported.load(Ordering::Acquire) == generation {
            tracing::warn!(
                thread = %slot.thread,
                blocked_ms = (now_ns() - started) / 1_000_000,
                "worker thread {} is free again: the handler yielded after {:.1} s",
                slot.thread,
                Duration::from_nanos(now_ns() - started).as_secs_f64()
            );
        }
        result
    }
}

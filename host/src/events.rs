//! The event bus: plugins (and the host) emit events; each subscribing plugin gets its own
//! bounded queue and one delivery task that calls its `on_event` one event at a time.
//!
//! Guarantees: every subscriber sees events in the order they were published (publishing
//! holds one lock across all queues); delivery never blocks the emitter (a full queue drops
//! the event for that subscriber, counts it and says so in the log); one subscriber's error,
//! panic or slowness affects no other; `flush` waits until everything published so far has
//! been handled. Events emitted while handling a request are published only when that
//! request has succeeded (see `forward`), so none describes a change that did not happen.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use abi_stable::std_types::{RString, RVec};
use plugin_api::abi::PluginModule_Ref;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::plugins::lifecycle::run_hook;

/// The tracing target of per-event delivery lines (debug level).
pub const EVENTS_TARGET: &str = "pixsim7::events";

/// The name counters use for events the host itself emits.
pub const HOST_EMITTER: &str = "host";

/// Counts of one plugin and one topic.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct TopicCounters {
    /// Events this plugin emitted on this topic.
    pub emitted: u64,
    /// Events on this topic this plugin's `on_event` handled.
    pub delivered: u64,
    /// Events on this topic this plugin's `on_event` failed on (error, panic, timeout).
    pub failed: u64,
    /// Events on this topic dropped because this plugin's queue was full.
    pub dropped: u64,
}

struct Envelope {
    source: String,
    topic: String,
    payload: Vec<u8>,
}

enum Delivery {
    Event(Arc<Envelope>),
    /// Answered when everything queued before it has been handled.
    Barrier(oneshot::Sender<()>),
}

struct Subscriber {
    plugin_id: String,
    patterns: Vec<String>,
    module: PluginModule_Ref,
    sender: mpsc::Sender<Delivery>,
    /// Taken when delivery starts.
    receiver: Option<mpsc::Receiver<Delivery>>,
    dropped_total: u64,
}

/// The bus. Shared by the request path, the host services and the lifecycle.
pub struct EventBus {
    capacity: usize,
    hook_timeout: Duration,
    subscribers: Mutex<Vec<Subscriber>>,
    counters: Mutex<BTreeMap<String, BTreeMap<String, TopicCounters>>>,
    /// Each subscriber's delivery task, once started.
    deliveries: Mutex<BTreeMap<String, tokio::task::JoinHandle<()>>>,
}

impl EventBus {
    /// A bus whose queues hold `capacity` events each.
    pub fn new(capacity: usize, hook_timeout: Duration) -> Arc<EventBus> {
        Arc::new(EventBus {
            capacity,
            hook_timeout,
            subscribers: Mutex::new(Vec::new()),
            counters: Mutex::new(BTreeMap::new()),
            deliveries: Mutex::new(BTreeMap::new()),
        })
    }

    /// Gives `plugin_id` a queue for events matching `patterns`. Events queue from now on;
    /// they are handed to the plugin once delivery starts.
    pub fn subscribe(&self, plugin_id: &str, patterns: &[String], module: PluginModule_Ref) {
        let (sender, receiver) = mpsc::channel(self.capacity);
        self.subscribers.lock().expect("bus lock").push(Subscriber {
            plugin_id: plugin_id.to_owned(),
            patterns: patterns.to_vec(),
            module,
            sender,
            receiver: Some(receiver),
            dropped_total: 0,
        });
    }

    /// Removes a plugin's queue before delivery starts (a plugin that failed to load); what
    /// it held is discarded.
    pub fn unsubscribe(&self, plugin_id: &str) {
        self.subscribers
            .lock()
            .expect("bus lock")
            .retain(|s| s.plugin_id != plugin_id);
    }

    /// Stops giving a plugin new events and waits (at most `patience`) until it has handled
    /// those already queued: after this, its `on_event` is not called again.
    pub async fn retire(&self, plugin_id: &str, patience: Duration) {
        self.unsubscribe(plugin_id);
        let delivery = self.deliveries.lock().expect("bus lock").remove(plugin_id);
        if let Some(delivery) = delivery {
            if tokio::time::timeout(patience, delivery).await.is_err() {
                tracing::warn!(
                    plugin = plugin_id,
                    "plugin {plugin_id} did not finish its queued events within {} s; the rest are dropped",
                    patience.as_secs()
                );
            }
        }
    }

    /// Queues an event for every matching subscriber, without waiting for any of them.
    pub fn publish(&self, emitter: &str, topic: &str, payload: &Value) {
        let envelope = Arc::new(Envelope {
            source: emitter.to_owned(),
            topic: topic.to_owned(),
            payload: payload.to_string().into_bytes(),
        });
        self.count(emitter, topic, |c| c.emitted += 1);
        let mut subscribers = self.subscribers.lock().expect("bus lock");
        for subscriber in subscribers.iter_mut() {
            if !subscriber
                .patterns
                .iter()
                .any(|p| plugin_api::events::matches(p, topic))
            {
                continue;
            }
            match subscriber
                .sender
                .try_send(Delivery::Event(envelope.clone()))
            {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    subscriber.dropped_total += 1;
                    self.count(&subscriber.plugin_id, topic, |c| c.dropped += 1);
                    // 1st, 2nd, 4th, 8th... drop: visible without flooding the log.
                    if subscriber.dropped_total.is_power_of_two() {
                        tracing::warn!(
                            plugin = %subscriber.plugin_id,
                            topic,
                            dropped = subscriber.dropped_total,
                            "event queue of plugin {} is full ({} events): dropped {topic} ({} dropped so far); the subscriber is too slow",
                            subscriber.plugin_id,
                            self.capacity,
                            subscriber.dropped_total
                        );
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Starts one delivery task per subscriber (on the current actix runtime).
    pub fn start_delivery(self: &Arc<Self>) {
        let mut subscribers = self.subscribers.lock().expect("bus lock");
        for subscriber in subscribers.iter_mut() {
            let Some(receiver) = subscriber.receiver.take() else {
                continue;
            };
            let bus = self.clone();
            let plugin_id = subscriber.plugin_id.clone();
            let module = subscriber.module;
            let task_plugin = plugin_id.clone();
            let task =
                actix_web::rt::spawn(
                    async move { bus.deliver(task_plugin, module, receiver).await },
                );
            self.deliveries
                .lock()
                .expect("bus lock")
                .insert(plugin_id, task);
        }
    }

    async fn deliver(
        &self,
        plugin_id: String,
        module: PluginModule_Ref,
        mut receiver: mpsc::Receiver<Delivery>,
    ) {
        while let Some(item) = receiver.recv().await {
            let envelope = match item {
                Delivery::Barrier(done) => {
                    let _ = done.send(());
                    continue;
                }
                Delivery::Event(envelope) => envelope,
            };
            let topic = envelope.topic.as_str();
            let hook = (module.on_event())(
                RString::from(envelope.source.as_str()),
                RString::from(topic),
                RVec::from(envelope.payload.clone()),
            );
            match run_hook(hook, self.hook_timeout).await {
                Ok(()) => {
                    self.count(&plugin_id, topic, |c| c.delivered += 1);
                    tracing::debug!(target: EVENTS_TARGET, plugin = %plugin_id, topic, "delivered {topic} to plugin {plugin_id}");
                }
                Err(reason) => {
                    self.count(&plugin_id, topic, |c| c.failed += 1);
                    tracing::error!(
                        plugin = %plugin_id,
                        topic,
                        "plugin {plugin_id} failed to handle event {topic}: {reason}"
                    );
                }
            }
        }
    }

    /// Waits until every subscriber has handled everything published before this call.
    /// Only meaningful once delivery has started.
    pub async fn flush(&self) {
        let waits: Vec<(
            mpsc::Sender<Delivery>,
            oneshot::Receiver<()>,
            oneshot::Sender<()>,
        )> = self
            .subscribers
            .lock()
            .expect("bus lock")
            .iter()
            .filter(|s| s.receiver.is_none())
            .map(|s| {
                let (done, wait) = oneshot::channel();
                (s.sender.clone(), wait, done)
            })
            .collect();
        for (sender, wait, done) in waits {
            // A barrier waits for room rather than being dropped like an event.
            if sender.send(Delivery::Barrier(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
    }

    /// The counters of one plugin, by topic.
    pub fn counters(&self, plugin_id: &str) -> BTreeMap<String, TopicCounters> {
        self.counters
            .lock()
            .expect("counters lock")
            .get(plugin_id)
            .cloned()
            .unwrap_or_default()
    }

    fn count(&self, plugin_id: &str, topic: &str, change: impl FnOnce(&mut TopicCounters)) {
        let mut counters = self.counters.lock().expect("counters lock");
        let per_topic = counters.entry(plugin_id.to_owned()).or_default();
        match per_topic.get_mut(topic) {
            Some(existing) => change(existing),
            None => {
                let mut fresh = TopicCounters::default();
                change(&mut fresh);
                per_topic.insert(topic.to_owned(), fresh);
            }
        }
    }
}

//! Prometheus metrics: what the host counts (requests, latencies, panics, timeouts, stalls,
//! quarantines, throttled sign-ins, database pool waits) and `GET /metrics` in the text
//! exposition format. Per-route handles are created once, when serving starts, so the
//! request path increments atomics and never looks a label set up.

use std::{
    sync::LazyLock,
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

/// `pixsim7_http_requests_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The plugin that owns the route, `host` for the host's own, `none` when no route matched.
    pub plugin: String,
    /// The route's template (`/api/v1/game/worlds/{world_id}`), never the raw path.
    pub route: String,
    /// The request method.
    pub method: String,
    /// The status class: `2xx`, `4xx`, ...
    pub status: &'static str,
}

/// Labels of per-route histograms and handler counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The owning plugin.
    pub plugin: String,
    /// The route's template.
    pub route: String,
    /// The request method.
    pub method: String,
}

/// A plugin.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// The plugin's id.
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriberLabels {
    subscriber: String,
}

/// `pixsim7_login_throttled_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabels {
    /// `username` or `address`.
    pub scope: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … 8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// Every metric the host keeps (one set per process).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Plugin panics while handling a request.
    pub panics: Family<PluginLabels, Counter>,
    /// Requests answered 504 because their handler took too long.
    pub timeouts: Family<RouteLabels, Counter>,
    /// Handlers that held their worker thread past the watchdog's threshold.
    pub stalls: Family<RouteLabels, Counter>,
    /// Times a plugin was quarantined.
    pub quarantines: Family<PluginLabels, Counter>,
    /// Sign-in attempts refused by throttling.
    pub login_throttled: Family<ScopeLabels, Counter>,
    /// How long a unit of work waited for a database connection (or SQLite's writer).
    pub pool_wait: Histogram,
    plugins: Family<StateLabels, Gauge>,
    event_lag: Family<SubscriberLabels, Gauge>,
    in_flight: Gauge,
    /// One scrape renders at a time (the gauges are cleared and refilled for each).
    rendering: std::sync::Mutex<()>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("pixsim7");
        let requests = Family::default();
        let durations = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let panics = Family::default();
        let timeouts = Family::default();
        let stalls = Family::default();
        let quarantines = Family::default();
        let login_throttled = Family::default();
        let pool_wait = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let plugins = Family::default();
        let event_lag = Family::default();
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "Plugin requests matched and not yet answered",
            in_flight.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by plugin, route template, method and status class",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from matching a request to its answer, by plugin, route template and method",
            durations.clone(),
        );
        registry.register(
            "plugin_panics",
            "Plugin panics caught by the host while handling a request",
            panics.clone(),
        );
        registry.register(
            "handler_timeouts",
            "Requests answered 504 because the handler did not finish in time",
            timeouts.clone(),
        );
        registry.register(
            "handler_stalls",
            "Handlers that held their worker thread without yielding past the watchdog threshold",
            stalls.clone(),
        );
        registry.register(
            "plugin_quarantines",
            "Times a plugin was quarantined after repeated stalls or panics",
            quarantines.clone(),
        );
        registry.register(
            "login_throttled",
            "Sign-in attempts refused with 429, by the bucket that was empty",
            login_throttled.clone(),
        );
        registry.register(
            "db_pool_wait_seconds",
            "Time a unit of work waited for a database connection or the SQLite writer",
            pool_wait.clone(),
        );
        registry.register(
            "plugins",
            "Plugin libraries by state (enabled, quarantined, disabled, failed, ...)",
            plugins.clone(),
        );
        registry.register(
            "event_lag",
            "Events in the outbox a subscriber has not handled yet",
            event_lag.clone(),
        );
        Metrics {
            registry,
            requests,
            durations,
            panics,
            timeouts,
            stalls,
            quarantines,
            login_throttled,
            pool_wait,
            plugins,
            event_lag,
            in_flight,
            rendering: std::sync::Mutex::new(()),
        }
    }

    /// Counts a panic of `plugin`.
    pub fn count_panic(&self, plugin: &str) {
        self.panics
            .get_or_create(&PluginLabels {
                plugin: plugin.to_owned(),
            })
            .inc();
    }

    /// Renders every metric, with the gauges read now: plugins by state, each subscriber's
    /// event lag (`None`: the database could not say; the gauge is left out), and the
    /// requests in flight.
    pub fn render(
        &self,
        states: &[&'static str],
        lags: &[(String, Option<u64>)],
        in_flight: usize,
    ) -> Result<String, std::fmt::Error> {
        let _one_at_a_time = crate::sync::lock(&self.rendering);
        self.in_flight
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
        self.plugins.clear();
        for &state in states {
            self.plugins.get_or_create(&StateLabels { state }).inc();
        }
        self.event_lag.clear();
        for (subscriber, lag) in lags {
            if let Some(lag) = lag {
                self.event_lag
                    .get_or_create(&SubscriberLabels {
                        subscriber: subscriber.clone(),
                    })
                    .set(i64::try_from(*lag).unwrap_or(i64::MAX));
            }
        }
        let mut text = String::with_capacity(16 * 1024);
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The metrics of one route (or the host's catch-all for unmatched requests), resolved once.
pub struct RouteMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
    labels: RouteLabels,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl RouteMetrics {
    /// The handles for `method route` of `plugin`.
    pub fn new(plugin: &str, route: &str, method: &str) -> RouteMetrics {
        let all = metrics();
        let labels = RouteLabels {
            plugin: plugin.to_owned(),
            route: route.to_owned(),
            method: method.to_owned(),
        };
        RouteMetrics {
            by_class: CLASSES.map(|status| {
                all.requests
                    .get_or_create(&RequestLabels {
                        plugin: labels.plugin.clone(),
                        route: labels.route.clone(),
                        method: labels.method.clone(),
                        status,
                    })
                    .clone()
            }),
            duration: all.durations.get_or_create(&labels).clone(),
            labels,
        }
    }

    /// Counts one answer.
    pub fn record(&self, status: u16, started: Instant) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.duration.observe(started.elapsed().as_secs_f64());
    }

    /// The labels, for the handler counters.
    pub fn labels(&self) -> &RouteLabels {
        &self.labels
    }
}

/// Records a wait for a database connection.
pub fn observe_pool_wait(waited: Duration) {
    metrics().pool_wait.observe(waited.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_s_answers_are_counted_by_class_and_timed() {
        let route = RouteMetrics::new("metrics-test", "/things/{id}", "GET");
        let started = Instant::now();
        route.record(200, started);
        route.record(204, started);
        route.record(404, started);
        let text = metrics().render(&["enabled", "enabled"], &[], 0).unwrap();
        assert!(
            text.contains(
                r#"pixsim7_http_requests_total{plugin="metrics-test",route="/things/{id}",method="GET",status="2xx"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"status="4xx"} 1"#), "{text}");
        assert!(
            text.contains(r#"pixsim7_http_request_duration_seconds_count{plugin="metrics-test",route="/things/{id}",method="GET"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pixsim7_plugins{state="enabled"} 2"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}

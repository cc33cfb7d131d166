//! Prometheus metrics of the service: what was committed, how batches and commits behave,
//! how deep the queue is, and refusals by code.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

/// A webhook attempt's outcome. No consumer name: `/metrics` takes no token, and the names
/// of consumers are the operators' to know (`GET /v1/consumers/{name}` shows each one's
/// attempts).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabel {
    /// `delivered` or `failed`.
    pub outcome: &'static str,
}

/// What a request was refused by: `address`, `key` (the activation throttle), `streams`
/// (the open event streams' bounds).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottleLabel {
    pub by: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub events_committed: Counter,
    pub batch_commands: Histogram,
    pub commit_latency_seconds: Histogram,
    pub queue_depth: Gauge,
    pub refusals: Family<CodeLabel, Counter>,
    pub webhook_attempts: Family<WebhookLabel, Counter>,
    /// From the fold of a delivery's first event to the receiver's 2xx.
    pub webhook_delivery_lag_seconds: Histogram,
    /// Requests answered 429, by what refused them.
    pub throttled: Family<ThrottleLabel, Counter>,
    /// Event streams open now.
    pub streams_open: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let events_committed = Counter::default();
        let batch_commands = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        let commit_latency_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        let queue_depth = Gauge::default();
        let refusals = Family::<CodeLabel, Counter>::default();
        let webhook_attempts = Family::<WebhookLabel, Counter>::default();
        let webhook_delivery_lag_seconds = Histogram::new([
            0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 60.0,
        ]);
        let throttled = Family::<ThrottleLabel, Counter>::default();
        let streams_open = Gauge::default();
        let mut registry = Registry::with_prefix("keyledger");
        registry.register(
            "throttled",
            "Requests answered 429 Too Many Requests, by what refused them",
            throttled.clone(),
        );
        registry.register(
            "streams_open",
            "Event streams open now",
            streams_open.clone(),
        );
        registry.register(
            "events_committed",
            "Events appended to the log",
            events_committed.clone(),
        );
        registry.register(
            "batch_commands",
            "Commands per committed batch",
            batch_commands.clone(),
        );
        registry.register(
            "commit_latency_seconds",
            "Durable commit time per batch",
            commit_latency_seconds.clone(),
        );
        registry.register(
            "queue_depth",
            "Submissions waiting for the writer",
            queue_depth.clone(),
        );
        registry.register("refusals", "Refused commands by code", refusals.clone());
        registry.register(
            "webhook_attempts",
            "Webhook deliveries attempted, by outcome",
            webhook_attempts.clone(),
        );
        registry.register(
            "webhook_delivery_lag_seconds",
            "From the fold of a delivery's first event to the receiver's 2xx answer",
            webhook_delivery_lag_seconds.clone(),
        );
        Metrics {
            registry,
            events_committed,
            batch_commands,
            commit_latency_seconds,
            queue_depth,
            refusals,
            webhook_attempts,
            webhook_delivery_lag_seconds,
            throttled,
            streams_open,
        }
    }

    pub fn observe(&self, committed: &keyledger_ledger::Committed) {
        self.events_committed.inc_by(committed.events.len() as u64);
        self.batch_commands.observe(committed.commands as f64);
        self.commit_latency_seconds
            .observe(committed.commit_micros as f64 / 1e6);
    }

    pub fn refused(&self, code: &str) {
        self.refusals
            .get_or_create(&CodeLabel {
                code: code.to_owned(),
            })
            .inc();
    }

    pub fn webhook_attempt(&self, delivered: bool) {
        self.webhook_attempts
            .get_or_create(&WebhookLabel {
                outcome: if delivered { "delivered" } else { "failed" },
            })
            .inc();
    }

    pub fn throttled(&self, by: &'static str) {
        self.throttled.get_or_create(&ThrottleLabel { by }).inc();
    }

    pub fn webhook_lag(&self, lag: std::time::Duration) {
        self.webhook_delivery_lag_seconds.observe(lag.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

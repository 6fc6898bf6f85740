//! The projector's Prometheus metrics, served on `PROJECTOR_ADDR/metrics`.

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Every metric the projector exports; names are used by `deploy/` dashboards.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Events newly applied to the read model.
    pub events_projected: IntCounter,
    /// Records checkpointed, whatever became of them (applied, duplicate,
    /// filtered out, dead-lettered): the progress of a replay.
    pub records: IntCounter,
    /// Events skipped because the audit ledger already held them.
    pub duplicates: IntCounter,
    /// Events whose id was already applied with another request body: an
    /// `Idempotency-Key` reused for a different report (see
    /// `idempotency_conflicts`). Should stay at zero; alert on any increase.
    pub idempotency_conflicts: IntCounter,
    /// Records sent to the dead-letter topic, by reason class.
    pub dlq: IntCounterVec,
    /// Records per committed batch.
    pub batch_size: Histogram,
    /// Time to write and commit one batch.
    pub batch_seconds: Histogram,
    /// Postgres write attempts that failed and were retried.
    pub pg_retries: IntCounter,
    /// The last committed checkpoint (next offset) per partition.
    pub checkpoint: IntGaugeVec,
    /// Consumer lag per partition, from librdkafka statistics.
    pub lag: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers every metric. It stays whole (53 lines): it is
    /// the table of exported names, one entry per field.
    pub fn new() -> Self {
        let mut r = Registrar::default();
        let metrics = Self {
            events_projected: r.counter(
                "vibemon_projector_events_projected_total",
                "Events applied to the read model",
            ),
            records: r.counter(
                "vibemon_projector_records_total",
                "Records checkpointed (applied, duplicate, filtered or dead-lettered)",
            ),
            duplicates: r.counter(
                "vibemon_projector_duplicate_events_total",
                "Events skipped because they were already applied",
            ),
            idempotency_conflicts: r.counter(
                "vibemon_projector_idempotency_conflicts_total",
                "Events not applied because their Idempotency-Key was already used for a different request body",
            ),
            dlq: r.counter_vec(
                "vibemon_projector_dlq_total",
                "Records sent to the dead-letter topic",
                &["reason"],
            ),
            batch_size: r.histogram(
                "vibemon_projector_batch_size",
                "Records per committed batch",
                &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0],
            ),
            batch_seconds: r.histogram(
                "vibemon_projector_batch_duration_seconds",
                "Time to write and commit one batch",
                &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
            ),
            pg_retries: r.counter(
                "vibemon_projector_pg_retries_total",
                "Failed Postgres batch writes that were retried",
            ),
            checkpoint: r.gauge_vec(
                "vibemon_projector_checkpoint_offset",
                "Last committed next offset per partition",
                &["topic", "partition"],
            ),
            lag: r.gauge_vec(
                "vibemon_projector_consumer_lag",
                "Records behind the high watermark per partition",
                &["topic", "partition"],
            ),
            registry: Registry::new(),
        };
        vibemon_runtime::register_all(&metrics.registry, r.collectors);
        metrics
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        vibemon_runtime::render_metrics(&self.registry)
    }
}

/// Creates metrics and keeps a handle on each, for the registry. The names
/// and help texts are fixed, so creating one cannot fail.
#[derive(Default)]
struct Registrar {
    collectors: Vec<Box<dyn Collector>>,
}

impl Registrar {
    fn keep<M: Collector + Clone + 'static>(&mut self, metric: M) -> M {
        self.collectors.push(Box::new(metric.clone()));
        metric
    }

    fn counter(&mut self, name: &str, help: &str) -> IntCounter {
        self.keep(IntCounter::new(name, help).expect("a valid metric"))
    }

    fn counter_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.keep(IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric"))
    }

    fn gauge_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.keep(IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric"))
    }

    fn histogram(&mut self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.keep(Histogram::with_opts(opts).expect("a valid metric"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

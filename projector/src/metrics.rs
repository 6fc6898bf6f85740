//! The projector's Prometheus metrics, served on `PROJECTOR_ADDR/metrics`.

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
    pub fn new() -> Self {
        let registry = Registry::new();
        let events_projected = IntCounter::new(
            "vibemon_projector_events_projected_total",
            "Events applied to the read model",
        )
        .unwrap();
        let records = IntCounter::new(
            "vibemon_projector_records_total",
            "Records checkpointed (applied, duplicate, filtered or dead-lettered)",
        )
        .unwrap();
        let duplicates = IntCounter::new(
            "vibemon_projector_duplicate_events_total",
            "Events skipped because they were already applied",
        )
        .unwrap();
        let idempotency_conflicts = IntCounter::new(
            "vibemon_projector_idempotency_conflicts_total",
            "Events not applied because their Idempotency-Key was already used for a different request body",
        )
        .unwrap();
        let dlq = IntCounterVec::new(
            Opts::new(
                "vibemon_projector_dlq_total",
                "Records sent to the dead-letter topic",
            ),
            &["reason"],
        )
        .unwrap();
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "vibemon_projector_batch_size",
                "Records per committed batch",
            )
            .buckets(vec![
                1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
            ]),
        )
        .unwrap();
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "vibemon_projector_batch_duration_seconds",
                "Time to write and commit one batch",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .unwrap();
        let pg_retries = IntCounter::new(
            "vibemon_projector_pg_retries_total",
            "Failed Postgres batch writes that were retried",
        )
        .unwrap();
        let checkpoint = IntGaugeVec::new(
            Opts::new(
                "vibemon_projector_checkpoint_offset",
                "Last committed next offset per partition",
            ),
            &["topic", "partition"],
        )
        .unwrap();
        let lag = IntGaugeVec::new(
            Opts::new(
                "vibemon_projector_consumer_lag",
                "Records behind the high watermark per partition",
            ),
            &["topic", "partition"],
        )
        .unwrap();
        vibemon_runtime::register_all(
            &registry,
            vec![
                Box::new(events_projected.clone()),
                Box::new(records.clone()),
                Box::new(duplicates.clone()),
                Box::new(idempotency_conflicts.clone()),
                Box::new(dlq.clone()),
                Box::new(batch_size.clone()),
                Box::new(batch_seconds.clone()),
                Box::new(pg_retries.clone()),
                Box::new(checkpoint.clone()),
                Box::new(lag.clone()),
            ],
        );
        Self {
            registry,
            events_projected,
            records,
            duplicates,
            idempotency_conflicts,
            dlq,
            batch_size,
            batch_seconds,
            pg_retries,
            checkpoint,
            lag,
        }
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        vibemon_runtime::render_metrics(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

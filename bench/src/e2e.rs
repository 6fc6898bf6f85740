//! Part 6: end to end. The ingest and projector binaries run together; an
//! open loop posts at a fixed rate (half the measured durable maximum) and,
//! for every 201, a poller notes when that deployment's row first became
//! visible in `deployments`. The latency is the time from the 201 to then,
//! to within one poll (10 ms).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use uuid::Uuid;
use vibemon_testkit::{Tenant, TestDb, TestTopic};

use crate::ingest::{start, Sink};
use crate::load::open_loop;
use crate::process::{free_port, sibling_binary, wait_ready, Service};
use crate::report::{Report, Row};
use crate::Options;

const POLL: Duration = Duration::from_millis(10);

/// Runs at `rate`; with `counts`, the result is the half-load one, otherwise
/// the quarter-load one (each has its own target).
pub async fn run(
    opts: &Options,
    rate: f64,
    counts: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let db = TestDb::new().await;
    let tenant = Tenant::create(&db.pool, "bench").await;
    let topic = TestTopic::new(6).await;
    let ingest = start(opts, &db, &tenant, &topic, Sink::Durable, "e2e-ingest.log").await?;
    let projector_addr = format!("127.0.0.1:{}", free_port());
    let projector = Service::start(
        "projector",
        &sibling_binary("projector")?,
        &[],
        &[
            ("DATABASE_URL", db.url.clone()),
            ("KAFKA_BROKERS", topic.brokers.clone()),
            ("KAFKA_TOPIC", topic.name.clone()),
            ("KAFKA_GROUP", "bench-e2e".to_owned()),
            ("PROJECTOR_ADDR", projector_addr.clone()),
        ],
        &opts.out.join("e2e-projector.log"),
    )?;
    wait_ready(
        &format!("http://{projector_addr}/readyz"),
        Duration::from_secs(60),
    )
    .await?;

    // Warm-up: ready is not yet consuming (the group join takes seconds), so
    // a first load would measure the projector's start, not its steady
    // state. Load it for 3 s and wait until every row is visible.
    eprintln!("e2e: warming up at {rate:.0}/s for 3 s");
    let warm = open_loop(
        ingest.target.clone(),
        rate,
        Duration::from_secs(3),
        2048,
        false,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while crate::projector::count(&db.pool, "deployments").await? < warm.ok as i64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the warm-up's rows never all became visible"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The poller reads only rows projected since its last look; this index,
    // in the bench's own database only, keeps that from scanning the whole
    // table every 10 ms (it costs the projector one more index to maintain).
    sqlx::query("CREATE INDEX deployments_projected_at ON deployments (projected_at)")
        .execute(&db.pool)
        .await?;

    // The poller: first sight of each row. `projected_at` is the projecting
    // transaction's start, so a window reaching back 2 s past the newest one
    // seen cannot miss a row committed since the last poll.
    let seen: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let poller = {
        let (pool, seen, stop) = (db.pool.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            let mut since: DateTime<Utc> = Utc::now();
            loop {
                let rows: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
                    "SELECT id, projected_at FROM deployments WHERE projected_at >= $1",
                )
                .bind(since)
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
                let now = Instant::now();
                {
                    let mut seen = seen.lock().unwrap();
                    for (id, at) in rows {
                        seen.entry(id).or_insert(now);
                        since = since.max(at - chrono::Duration::seconds(2));
                    }
                }
                tokio::select! {
                    () = stop.notified() => break,
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        })
    };

    eprintln!("e2e: open loop at {rate:.0}/s for {} s", opts.e2e_seconds);
    let load = open_loop(
        ingest.target.clone(),
        rate,
        Duration::from_secs(opts.e2e_seconds),
        2048,
        true,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let all = {
            let seen = seen.lock().unwrap();
            load.acked.iter().all(|(id, _)| seen.contains_key(id))
        };
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.notify_one();
    poller.await?;
    ingest.service.stop().await;
    projector.stop().await;

    let seen = seen.lock().unwrap();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut missing = 0;
    for (id, acked) in &load.acked {
        match seen.get(id) {
            Some(visible) => latency.saturating_record(
                visible.saturating_duration_since(*acked).as_micros().max(1) as u64,
            ),
            None => missing += 1,
        }
    }
    let ms = |p: f64| latency.value_at_percentile(p) as f64 / 1000.0;
    eprintln!(
        "e2e: {} acknowledged, {missing} not visible after 60 s; p50 {:.1} ms, p99 {:.1} ms",
        load.acked.len(),
        ms(50.0),
        ms(99.0)
    );
    anyhow::ensure!(
        missing == 0,
        "{missing} acknowledged deployments never became visible"
    );
    report.rows.push(Row {
        part: "end to end",
        what: format!(
            "201 → row visible, open loop at {rate:.0}/s for {} s",
            opts.e2e_seconds
        ),
        rate: Some(load.rate()),
        unit: "webhooks/s",
        latency_ms: Some([ms(50.0), ms(99.0), ms(99.9)]),
        peak_rss_mib: None,
        note: format!(
            "{} rows, polled every {} ms; HTTP p99 {:.1} ms",
            load.acked.len(),
            POLL.as_millis(),
            load.ms(99.0)
        ),
    });
    if counts {
        report.figures.e2e_p99_ms = Some(ms(99.0));
    } else {
        report.figures.e2e_p99_quarter_ms = Some(ms(99.0));
    }
    Ok(())
}

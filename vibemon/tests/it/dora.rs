//! "What changed" and the DORA metrics end to end: webhooks with commit lists
//! posted to the real ingest, projected from real Kafka into Postgres, read
//! back from `GET /api/v1/metrics/dora`, `GET /api/v1/deployments/{id}` and
//! `vibemon dora`. The history is the worked example of docs/dora.md:
//!
//! | deployment | deployed (Jan 2024) | status  | commit | lists    |
//! |------------|---------------------|---------|--------|----------|
//! | D1         | 1st 12:00           | success | c2     | c1, c2   |
//! | D2         | 2nd 12:00           | success | c3     | c2, c3   |
//! | D3         | 3rd 12:00           | success | c4     | c4       |
//! | D4         | 3rd 13:00           | success | c3     | (none)   |
//! | D5         | 4th 10:00           | failed  | c5     | c5       |
//! | D6         | 4th 14:00           | success | c5     | c5       |
//! | W1 (web)   | 2nd 09:00           | success | w1     | (none)   |
//!
//! D4 goes back to D2's commit: a rollback, and D3 is rolled back.

use std::time::Duration;

use serde_json::{json, Value};
use vibemon_runtime::KafkaArgs;
use vibemon_testkit::{eventually, TestDb, TestTopic};

use crate::cli::{ok, vibemon};
use crate::stack::{Ingest, Projector};

/// The commit called `c{n}` (or `w{n}`) in the table above.
fn sha(name: &str) -> String {
    let n: u64 = name[1..].parse().unwrap();
    let base: u64 = if name.starts_with('w') {
        0xbeef00
    } else {
        0xc0ff00
    };
    format!("{:040x}", base + n)
}

fn commit(name: &str, committed_at: &str) -> Value {
    json!({
        "sha": sha(name),
        "committed_at": committed_at,
        "author": "Ada Lovelace",
        "subject": format!("change {name}"),
    })
}

/// Commit times: lead times are 3h, 2h, 4h, 3h and 2h at first shipping.
fn c(n: u8) -> Value {
    let at = [
        "2024-01-01T09:00:00Z",
        "2024-01-01T10:00:00Z",
        "2024-01-02T08:00:00Z",
        "2024-01-03T09:00:00Z",
        "2024-01-04T12:00:00Z",
    ][usize::from(n) - 1];
    commit(&format!("c{n}"), at)
}

/// The webhook bodies of the table, in the order they happened.
fn history() -> Vec<(&'static str, Value)> {
    let body = |repo: &str, at: &str, status: &str, head: &str, commits: Vec<Value>| {
        let mut b = json!({
            "environment": "production",
            "repository": repo,
            "commit_sha": sha(head),
            "status": status,
            "deployed_at": at,
        });
        if !commits.is_empty() {
            b["commits"] = Value::Array(commits);
        }
        b
    };
    vec![
        (
            "D1",
            body(
                "acme/api",
                "2024-01-01T12:00:00Z",
                "success",
                "c2",
                vec![c(1), c(2)],
            ),
        ),
        (
            "W1",
            body("acme/web", "2024-01-02T09:00:00Z", "success", "w1", vec![]),
        ),
        (
            "D2",
            body(
                "acme/api",
                "2024-01-02T12:00:00Z",
                "success",
                "c3",
                vec![c(2), c(3)],
            ),
        ),
        (
            "D3",
            body(
                "acme/api",
                "2024-01-03T12:00:00Z",
                "success",
                "c4",
                vec![c(4)],
            ),
        ),
        (
            "D4",
            body("acme/api", "2024-01-03T13:00:00Z", "success", "c3", vec![]),
        ),
        (
            "D5",
            body(
                "acme/api",
                "2024-01-04T10:00:00Z",
                "failed",
                "c5",
                vec![c(5)],
            ),
        ),
        (
            "D6",
            body(
                "acme/api",
                "2024-01-04T14:00:00Z",
                "success",
                "c5",
                vec![c(5)],
            ),
        ),
    ]
}

/// A tenant, ingest and projector on their own database and topic.
struct Pipeline {
    db: TestDb,
    _topic: TestTopic,
    ws: String,
    key: String,
    ingest: Ingest,
    projector: Projector,
    http: reqwest::Client,
}

impl Pipeline {
    async fn start() -> Self {
        let (db, topic) = (TestDb::new().await, TestTopic::new(3).await);
        let ws = ok(&db.url, &["workspace", "create", "dora"]);
        ok(
            &db.url,
            &["environment", "create", "--workspace", &ws, "production"],
        );
        let key = ok(
            &db.url,
            &[
                "key",
                "create",
                "--workspace",
                &ws,
                "--name",
                "ci",
                "--scope",
                "ingest,read",
            ],
        );
        let kafka = KafkaArgs::local(&topic.brokers, &topic.name);
        let ingest = Ingest::spawn(&db.url, kafka.clone()).await;
        let group = format!("dora-{}", uuid::Uuid::new_v4().simple());
        let projector = Projector::spawn(&db.url, kafka, &group).await;
        Self {
            db,
            _topic: topic,
            ws,
            key,
            ingest,
            projector,
            http: reqwest::Client::new(),
        }
    }

    /// Posts each body; returns the deployment ids by name.
    async fn post(&self, bodies: &[(&'static str, Value)]) -> Vec<(&'static str, String)> {
        let mut ids = Vec::new();
        for (name, body) in bodies {
            let resp = self
                .http
                .post(format!(
                    "http://{}/api/v1/deployments/webhook",
                    self.ingest.addr
                ))
                .header("X-Workspace-Key", &self.key)
                .json(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201, "{name}: {}", resp.text().await.unwrap());
            let created: Value = resp.json().await.unwrap();
            ids.push((*name, created["id"].as_str().unwrap().to_owned()));
        }
        let n = bodies.len() as i64;
        eventually(Duration::from_secs(30), || async {
            let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM deployment_audit")
                .fetch_one(&self.db.pool)
                .await
                .unwrap();
            (applied == n).then_some(())
        })
        .await
        .expect("every report is projected");
        ids
    }

    async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("http://{}{path_and_query}", self.ingest.addr))
            .header("X-Workspace-Key", &self.key)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn dora(&self, query: &str) -> Value {
        let (status, body) = self
            .get(&format!(
                "/api/v1/metrics/dora?environment=production&{query}"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn stop(self) {
        self.ingest.stop().await;
        self.projector.stop().await;
    }
}

const WINDOW: &str = "since=2024-01-01T00:00:00Z&until=2024-01-08T00:00:00Z";
const WEEK: &str = "since=2024-01-01T00:00:00Z&until=2024-01-08T00:00:00Z&bucket=week";

/// A lineage row by times: deployed_at, commit, and the deployed_at of its
/// predecessor, of what it rolled back to, and of what rolled it back.
type LineageFacts = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A figure equal to `want` up to floating-point rounding.
fn close(got: &Value, want: f64) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("{got} is not a number"));
    assert!((got - want).abs() < 1e-6, "{got} != {want}");
}

fn id_of<'a>(ids: &'a [(&str, String)], name: &str) -> &'a str {
    &ids.iter().find(|(n, _)| *n == name).unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_found_and_the_deployment_it_undid_is_marked() {
    let p = Pipeline::start().await;
    let ids = p.post(&history()).await;

    let (_, d4) = p
        .get(&format!("/api/v1/deployments/{}", id_of(&ids, "D4")))
        .await;
    assert_eq!(d4["lineage"]["rollback_to"], id_of(&ids, "D2"), "{d4}");
    assert_eq!(d4["lineage"]["predecessor_id"], id_of(&ids, "D3"));
    assert_eq!(d4["lineage"]["predecessor_commit_sha"], sha("c4"));
    assert_eq!(d4["lineage"]["rolled_back_by"], Value::Null);

    let (_, d3) = p
        .get(&format!("/api/v1/deployments/{}", id_of(&ids, "D3")))
        .await;
    assert_eq!(d3["lineage"]["rolled_back_by"], id_of(&ids, "D4"), "{d3}");
    assert_eq!(d3["lineage"]["rollback_to"], Value::Null);
    assert_eq!(d3["commits"][0]["sha"], sha("c4"));
    assert_eq!(d3["commits"][0]["subject"], "change c4");

    // D2 redeploys nothing and rolls back nothing; its range starts at D1.
    let (_, d2) = p
        .get(&format!("/api/v1/deployments/{}", id_of(&ids, "D2")))
        .await;
    assert_eq!(d2["lineage"]["predecessor_commit_sha"], sha("c2"));
    assert_eq!(d2["lineage"]["rollback_to"], Value::Null);
    assert_eq!(d2["lineage"]["rolled_back_by"], Value::Null);
    let listed: Vec<&str> = d2["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["sha"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [sha("c3"), sha("c2")], "newest commit first");

    // The failed deployment has no place among the successes.
    let (_, d5) = p
        .get(&format!("/api/v1/deployments/{}", id_of(&ids, "D5")))
        .await;
    assert_eq!(d5["lineage"], Value::Null);

    let m = p.dora(WEEK).await;
    let total = &m["total"];
    let frequency = &total["deployment_frequency"];
    assert_eq!(
        (&frequency["deployments"], &frequency["rollbacks"]),
        (&json!(6), &json!(1))
    );
    close(&frequency["days"], 7.0);
    close(&frequency["per_day"], 6.0 / 7.0);
    let cfr = &total["change_failure_rate"];
    assert_eq!(
        [
            &cfr["failed"],
            &cfr["rolled_back"],
            &cfr["failures"],
            &cfr["completed"]
        ],
        [&json!(1), &json!(1), &json!(2), &json!(7)]
    );
    close(&cfr["rate"], 2.0 / 7.0);
    // D3 → D4 (1 h) and D5 → D6 (4 h).
    let ttr = &total["time_to_restore"];
    assert_eq!(
        [&ttr["incidents"], &ttr["restored"], &ttr["unrestored"]],
        [&json!(2), &json!(2), &json!(0)]
    );
    close(&ttr["median_seconds"], 9000.0);
    close(&ttr["p90_seconds"], 13320.0);
    assert_eq!(m["buckets"].as_array().unwrap().len(), 1);
    assert_eq!(m["buckets"][0]["start"], "2024-01-01T00:00:00Z");
    assert_eq!(
        m["buckets"][0]["change_failure_rate"],
        total["change_failure_rate"]
    );
    vibemon_testkit::openapi::assert_fits("DoraReport", &m);
    vibemon_testkit::openapi::assert_fits("DeploymentDetail", &d3);
    vibemon_testkit::openapi::assert_fits("DeploymentDetail", &d5);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_commit_counts_once_at_its_first_shipping_and_a_first_deployment_only_with_its_list() {
    let p = Pipeline::start().await;
    p.post(&history()).await;

    // c1 3h, c2 2h (listed again by D2, counted once), c3 4h, c4 3h,
    // c5 2h (listed by the failed D5 first, shipped by D6).
    let m = p.dora(&format!("{WEEK}&repository=acme/api")).await;
    let lead = &m["total"]["lead_time"];
    assert_eq!(lead["commits"], 5);
    close(&lead["median_seconds"], 10800.0);
    close(&lead["p90_seconds"], 12960.0);
    // By day: D1 ships c1 and c2, D2 only c3.
    let days = p
        .dora(&format!("{WINDOW}&repository=acme/api&bucket=day"))
        .await;
    let per_day: Vec<i64> = days["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["lead_time"]["commits"].as_i64().unwrap())
        .collect();
    assert_eq!(per_day, [2, 1, 1, 1, 0, 0, 0]);
    close(&days["buckets"][1]["lead_time"]["median_seconds"], 14400.0);

    // acme/web's first deployment listed nothing: it ships no commits, not
    // the repository's history.
    let web = p.dora(&format!("{WEEK}&repository=acme/web")).await;
    assert_eq!(
        web["total"]["lead_time"],
        json!({"commits": 0, "median_seconds": null, "p90_seconds": null})
    );
    assert_eq!(web["total"]["deployment_frequency"]["deployments"], 1);

    // The CLI answers the same from the same query.
    let cli: Value = serde_json::from_str(&ok(
        &p.db.url,
        &[
            "dora",
            "--json",
            "--workspace",
            &p.ws,
            "--environment",
            "production",
            "--repository",
            "acme/api",
            "--since",
            "2024-01-01T00:00:00Z",
            "--until",
            "2024-01-08T00:00:00Z",
        ],
    ))
    .unwrap();
    assert_eq!(cli["total"], m["total"]);
    assert_eq!(cli["buckets"], m["buckets"]);
    let table = ok(
        &p.db.url,
        &[
            "dora",
            "--workspace",
            &p.ws,
            "--environment",
            "production",
            "--since",
            "2024-01-01T00:00:00Z",
            "--until",
            "2024-01-08T00:00:00Z",
        ],
    );
    assert!(table.contains("29% (2/7)"), "{table}");
    assert!(table.contains("6 (1 rollback)"), "{table}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_history_arriving_in_reverse_gives_the_same_metrics() {
    let (forward, backward) = tokio::join!(Pipeline::start(), Pipeline::start());
    let in_order = history();
    let mut reversed = history();
    reversed.reverse();
    tokio::join!(forward.post(&in_order), backward.post(&reversed));
    for query in [
        WEEK.to_owned(),
        format!("{WINDOW}&bucket=day"),
        format!("{WINDOW}&repository=acme/api&bucket=day"),
    ] {
        let (mut a, mut b) = (forward.dora(&query).await, backward.dora(&query).await);
        // Each pipeline created its own environment.
        a["environment_id"] = Value::Null;
        b["environment_id"] = Value::Null;
        assert_eq!(a, b, "{query}");
    }
    // Every fact of the lineage, each deployment named by when it ran (the
    // two pipelines gave their deployments different ids).
    let lineage = |pool: sqlx::PgPool| async move {
        let rows: Vec<LineageFacts> = sqlx::query_as(
            "SELECT d.deployed_at::text, l.commit_sha, p.deployed_at::text, r.deployed_at::text,
                        b.deployed_at::text
                 FROM deployment_lineage l JOIN deployments d ON d.id = l.deployment_id
                 LEFT JOIN deployments p ON p.id = l.predecessor_id
                 LEFT JOIN deployments r ON r.id = l.rollback_to
                 LEFT JOIN deployments b ON b.id = l.rolled_back_by
                 ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        rows
    };
    let (a, b) = (
        lineage(forward.db.pool.clone()).await,
        lineage(backward.db.pool.clone()).await,
    );
    assert_eq!(a, b);
    let rollbacks: Vec<_> = a.iter().filter(|r| r.3.is_some()).collect();
    assert_eq!(rollbacks.len(), 1, "one rollback: {a:?}");
    let shipped = |pool: sqlx::PgPool| async move {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT sha, deployed_at::text, committed_at::text FROM shipped_commits ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        rows
    };
    assert_eq!(
        shipped(forward.db.pool.clone()).await,
        shipped(backward.db.pool.clone()).await
    );
    forward.stop().await;
    backward.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_metrics_query_is_a_422_that_names_the_parameter() {
    let p = Pipeline::start().await;
    for (query, field) in [
        ("", "environment"),
        ("environment=production&bucket=year", "bucket"),
        (
            "environment=production&since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z",
            "since",
        ),
        (
            "environment=production&since=2000-01-01T00:00:00Z&until=2024-01-01T00:00:00Z&bucket=day",
            "bucket",
        ),
        ("environment=production&from=2024-01-01T00:00:00Z", "from"),
        ("environment=production&repository=", "repository"),
        // A bad window is refused before the environment is looked up.
        (
            "environment=nowhere&since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z",
            "since",
        ),
    ] {
        let (status, body) = p.get(&format!("/api/v1/metrics/dora?{query}")).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["detail"][0]["loc"][1], field, "{query}: {body}");
    }
    let (status, _) = p.get("/api/v1/metrics/dora?environment=nowhere").await;
    assert_eq!(status, 404);
    let out = vibemon(
        &p.db.url,
        &[
            "dora",
            "--workspace",
            &p.ws,
            "--environment",
            "production",
            "--bucket",
            "year",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    p.stop().await;
}

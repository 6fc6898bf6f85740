//! One deployment followed through the pipeline in a real Jaeger: the
//! webhook request's span and the projector's `project` span of its record
//! are one trace, read back from Jaeger's query API, and the trace is the
//! one the record's `ce_traceparent` and the audit row name.
//!
//! A test binary of its own: the exporter is installed in the process's
//! global tracing subscriber, which the `it` binary's many services share
//! without one. Needs `deploy/local/services up`; builds Jaeger once
//! (`deploy/local/jaeger install`, minutes when cold).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use uuid::Uuid;
use vibemon_runtime::KafkaArgs;
use vibemon_schemas::event::{TraceParent, TRACEPARENT_HEADER};
use vibemon_testkit::spawned::Spawned;
use vibemon_testkit::{read_topic, ReadRecord, Tenant, TestDb, TestTopic};

const JAEGER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/jaeger");
const BODY: &str = r#"{"environment": "production", "repository": "owner/repo"}"#;

/// A real Jaeger on free ports, killed on drop.
struct Jaeger {
    child: Child,
    otlp: u16,
    query: u16,
}

impl Jaeger {
    fn start() -> Self {
        let built = Command::new("bash")
            .args([JAEGER, "install"])
            .stdout(Stdio::null())
            .status();
        assert!(built.unwrap().success(), "deploy/local/jaeger install");
        let [otlp, query, grpc] = [free_port(), free_port(), free_port()];
        let child = Command::new("bash")
            .args([JAEGER, "run", &otlp.to_string(), &query.to_string()])
            .arg(grpc.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("deploy/local/jaeger run");
        Self { child, otlp, query }
    }

    fn query_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.query)
    }

    async fn wait_ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = client.get(self.query_url("/api/services")).send().await;
            if up.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "Jaeger did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The spans of `trace_id` Jaeger holds (none while it has not seen it).
    async fn spans(&self, client: &reqwest::Client, trace_id: &str) -> Vec<Value> {
        let url = self.query_url(&format!("/api/traces/{trace_id}"));
        let Ok(resp) = client.get(url).send().await else {
            return Vec::new();
        };
        let body: Value = resp.json().await.unwrap_or_default();
        body["data"][0]["spans"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn header<'r>(r: &'r ReadRecord, name: &str) -> &'r str {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} on {r:?}"))
}

fn named<'s>(spans: &'s [Value], name: &str) -> Option<&'s Value> {
    spans.iter().find(|s| s["operationName"] == name)
}

fn parent_of(span: &Value) -> Option<&str> {
    span["references"]
        .as_array()?
        .iter()
        .find(|r| r["refType"] == "CHILD_OF")
        .and_then(|r| r["spanID"].as_str())
}

async fn post(client: &reqwest::Client, ingest: &Spawned, key: &str, traceparent: &str) -> Uuid {
    let resp = client
        .post(ingest.url("/api/v1/deployments/webhook"))
        .header("X-Workspace-Key", key)
        .header("Content-Type", "application/json")
        .header("traceparent", traceparent)
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    body["id"].as_str().unwrap().parse().unwrap()
}

/// The audit row's `traceparent` once the projector wrote it.
async fn audit_traceparent(db: &TestDb, event_id: Uuid) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row: Option<Option<String>> =
            sqlx::query_scalar("SELECT traceparent FROM deployment_audit WHERE event_id = $1")
                .bind(event_id)
                .fetch_optional(&db.pool)
                .await
                .unwrap();
        if let Some(traceparent) = row {
            return traceparent;
        }
        assert!(Instant::now() < deadline, "the event was not projected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_and_the_projection_of_its_record_are_one_trace_in_jaeger() {
    // Arrange: Jaeger, then this process's exporter pointed at it, then a
    // real ingest and projector in-process.
    let client = reqwest::Client::new();
    let jaeger = Jaeger::start();
    jaeger.wait_ready(&client).await;
    std::env::set_var(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://127.0.0.1:{}", jaeger.otlp),
    );
    let telemetry = vibemon_runtime::telemetry::init("vibemon-traces-test");
    assert!(telemetry.exporting());
    let db = TestDb::new().await;
    let topic = TestTopic::new(1).await;
    let tenant = Tenant::create(&db.pool, "CI").await;
    let kafka = KafkaArgs::local(&topic.brokers, &topic.name);
    let ingest_config = vibemon_ingest::config::Config::new(&db.url, kafka.clone());
    let ingest = Spawned::start(|l, s| vibemon_ingest::serve(ingest_config, l, s)).await;
    let group = format!("traces-{}", Uuid::new_v4().simple());
    let projector_config = vibemon_projector::config::Config::new(&db.url, kafka, &group);
    let projector = Spawned::start(|l, s| vibemon_projector::serve(projector_config, l, s)).await;
    let given = TraceParent::new(
        Uuid::new_v4().as_u128(),
        Uuid::new_v4().as_u128() as u64 | 1,
        1,
    )
    .unwrap();

    // Act: one webhook continuing a known trace, one with a malformed one.
    let traced = post(&client, &ingest, &tenant.key, &given.to_string()).await;
    let replaced = post(&client, &ingest, &tenant.key, "00-not-a-traceparent").await;

    // Assert: the records and the audit rows carry the trace.
    let records = read_topic(&topic.brokers, &topic.name, 2, Duration::from_secs(20)).await;
    let record_of = |id: Uuid| {
        records
            .iter()
            .find(|r| header(r, "ce_id") == id.to_string())
            .expect("its record")
    };
    let on_record = TraceParent::parse(header(record_of(traced), TRACEPARENT_HEADER)).unwrap();
    assert_eq!(on_record.trace_id(), given.trace_id(), "the caller's trace");
    let new = TraceParent::parse(header(record_of(replaced), TRACEPARENT_HEADER)).unwrap();
    assert_ne!(new.trace_id(), given.trace_id());
    assert_eq!(
        audit_traceparent(&db, traced).await,
        Some(on_record.to_string())
    );
    assert_eq!(
        audit_traceparent(&db, replaced).await,
        Some(new.to_string())
    );

    // Assert: Jaeger holds the webhook span (a child of the caller's span)
    // and the projection's span (a child of the webhook span) in one trace.
    let trace_id = given.trace_id_hex();
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        telemetry.flush();
        let spans = jaeger.spans(&client, &trace_id).await;
        if named(&spans, "webhook").is_some() && named(&spans, "project").is_some() {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "trace {trace_id} in Jaeger: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let webhook = named(&spans, "webhook").unwrap();
    let project = named(&spans, "project").unwrap();
    let webhook_id = format!("{:016x}", on_record.parent_id());
    assert_eq!(
        webhook["spanID"],
        webhook_id.as_str(),
        "the record names it"
    );
    assert_eq!(
        parent_of(webhook),
        Some(format!("{:016x}", given.parent_id()).as_str())
    );
    assert_eq!(parent_of(project), Some(webhook_id.as_str()));
    // The malformed request's trace, started by ingest, has its spans too.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        telemetry.flush();
        let spans = jaeger.spans(&client, &new.trace_id_hex()).await;
        if named(&spans, "webhook").is_some() && named(&spans, "project").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the new trace in Jaeger");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    ingest.stop().await.unwrap();
    projector.stop().await.unwrap();
}

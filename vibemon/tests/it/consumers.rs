//! The example consumers of `examples/consumers/` (Python confluent-kafka, Go
//! franz-go, Java kafka-clients) against a topic the real ingest wrote: every
//! event version (v1 and v2 webhooks, a v3 GitLab delivery), a duplicate
//! record, a version no consumer knows and a record that is not JSON, the
//! last two dead-lettered by the real projector, and a v1 record with a
//! lowercase RFC 3339 timestamp. The histories include a success overturned
//! by a later failure of the same deployment (nothing of it runs) and a
//! deployment reported successful twice (the second commit runs). Each consumer's "what is
//! running where" must be exactly the read API's answer, and each one's
//! reading of the DLQ exactly what the DLQ holds. The records' headers are
//! held to `schemas/asyncapi.json` on the way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};
use uuid::Uuid;
use vibemon_runtime::KafkaArgs;
use vibemon_store::integrations::{self, NewIntegration, Provider, SecretKey};
use vibemon_testkit::{read_topic, ReadRecord, Tenant, TestDb, TestTopic};

use crate::stack::{Ingest, Projector};

/// A key as `openssl rand -base64 32` makes one.
const INTEGRATION_KEY: &str = "DpilrpQThIQu1TE6BQlNrR3PLNjfjHctl6IeX3asbv0=";

fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn asyncapi() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(repo_dir().join("schemas/asyncapi.json")).unwrap(),
    )
    .unwrap()
}

/// The property names of a headers schema of the AsyncAPI document, and
/// which of them are required.
fn documented_headers(schema: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let doc = asyncapi();
    let s = &doc["components"]["schemas"][schema];
    let names = s["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let required = s["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    (names, required)
}

fn header<'a>(r: &'a ReadRecord, name: &str) -> &'a str {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header on {r:?}"))
}

fn sha(c: char) -> String {
    c.to_string().repeat(40)
}

/// The webhook bodies: v1 reports (a late older one, an external deployment
/// pending then successful, a failure, a success overturned by a later
/// failure of the same deployment, a deployment reported successful twice
/// with a new commit and time, and the later-dated report a directly
/// produced lowercase-timestamp record must not beat) and one v2 report
/// with commits.
fn webhook_bodies() -> Vec<Value> {
    let v1 = |env: &str, repo: &str, c: char, status: &str, at: &str| {
        json!({"environment": env, "repository": repo, "branch": "main", "commit_sha": sha(c),
               "status": status, "source": "github_actions", "deployed_at": at})
    };
    let mut pending = v1(
        "staging",
        "acme/api",
        'd',
        "pending",
        "2026-01-03T10:00:00Z",
    );
    pending["external_id"] = json!("run-7");
    let mut done = pending.clone();
    done["status"] = json!("success");
    let mut v2 = v1(
        "production",
        "acme/web",
        'f',
        "success",
        "2026-01-04T10:00:00.123456Z",
    );
    v2["previous_commit_sha"] = json!(sha('e'));
    v2["commits"] = json!([{"sha": sha('f'), "committed_at": "2026-01-03T09:00:00Z"}]);
    // Its only success overturned: nothing of acme/flip runs in production.
    let mut flip = v1(
        "production",
        "acme/flip",
        'e',
        "success",
        "2026-11-29T10:00:00Z",
    );
    flip["external_id"] = json!("flip-1");
    let mut flop = flip.clone();
    flop["status"] = json!("failed");
    // One deployment reported successful twice: the second report's commit
    // and time are what runs.
    let mut once = v1(
        "production",
        "acme/twice",
        '3',
        "success",
        "2026-02-01T10:00:00Z",
    );
    once["external_id"] = json!("twice-1");
    let mut twice = once.clone();
    twice["commit_sha"] = json!(sha('4'));
    twice["deployed_at"] = json!("2026-02-02T10:00:00Z");
    vec![
        v1(
            "production",
            "acme/api",
            'a',
            "success",
            "2026-01-01T10:00:00Z",
        ),
        v1(
            "production",
            "acme/api",
            'b',
            "success",
            "2026-01-02T10:00:00Z",
        ),
        v1(
            "production",
            "acme/api",
            'c',
            "success",
            "2025-12-31T10:00:00Z",
        ),
        pending,
        done,
        v1(
            "production",
            "acme/web",
            'e',
            "failed",
            "2026-01-02T10:00:00Z",
        ),
        v2,
        flip,
        flop,
        once,
        twice,
        v1(
            "production",
            "acme/lower",
            '5',
            "success",
            "2024-01-15T10:30:00Z",
        ),
    ]
}

/// Publishes every version through the real ingest; returns the number of
/// events (one per 201).
async fn publish_through_ingest(db: &TestDb, tenant: &Tenant, ingest: &Ingest) -> usize {
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", ingest.addr);
    let bodies = webhook_bodies();
    for body in &bodies {
        let resp = client
            .post(url("/api/v1/deployments/webhook"))
            .header("X-Workspace-Key", &tenant.key)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{body}: {}", resp.text().await.unwrap());
    }
    // Version 3: GitLab's own deployment hook, received natively.
    let key = SecretKey::parse(INTEGRATION_KEY).unwrap();
    let new = NewIntegration {
        workspace_id: tenant.workspace_id,
        provider: Provider::Gitlab,
        name: "deploys".to_owned(),
        environment_map: BTreeMap::from([("staging".to_owned(), "staging".to_owned())]),
        create_environments: false,
    };
    let (receiver, token) = integrations::create(&db.pool, &key, &new).await.unwrap();
    let resp = client
        .post(url(&receiver.path()))
        .header("Content-Type", "application/json")
        .header("X-Gitlab-Event", "Deployment Hook")
        .header("X-Gitlab-Token", token)
        .header("X-Gitlab-Event-UUID", Uuid::new_v4().to_string())
        .body(include_str!(
            "../../../ingest/tests/fixtures/integrations/gitlab-deployment.json"
        ))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert!(
        status.is_success(),
        "GitLab delivery: {status} {}",
        resp.text().await.unwrap()
    );
    bodies.len() + 1
}

/// Every record's headers are the AsyncAPI document's: all required ones
/// there, none it does not name, and the W3C `ce_traceparent` that the
/// document lists as optional (older records lack it) but ingest now
/// writes on every record; and each version of 1 to 3 is on the topic.
fn assert_headers_as_documented(records: &[ReadRecord]) {
    let mut versions = BTreeSet::new();
    for r in records {
        let v: Value = serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap();
        let version = v["schema_version"].as_u64().unwrap();
        versions.insert(version);
        let (names, required) = documented_headers(&format!("cloudEventsHeadersV{version}"));
        let present: BTreeSet<String> = r.headers.iter().map(|(k, _)| k.clone()).collect();
        assert!(
            present.is_subset(&names),
            "{present:?} not all in {names:?}"
        );
        assert!(
            required.is_subset(&present),
            "{required:?} not all in {present:?}"
        );
        assert_eq!(
            header(r, "ce_type"),
            format!("com.vibemonitor.deployment.reported.v{version}")
        );
        let traceparent = header(r, vibemon_schemas::event::TRACEPARENT_HEADER);
        assert!(
            vibemon_schemas::event::TraceParent::parse(traceparent).is_some(),
            "{traceparent:?}"
        );
    }
    assert_eq!(versions, BTreeSet::from([1, 2, 3]), "every event version");
}

/// Produces, beside ingest's records: a copy of one (a producer retry), a
/// version 4 event no consumer knows and a value that is not JSON. Returns
/// how many records that made.
async fn publish_oddities(topic: &TestTopic, records: &[ReadRecord]) -> usize {
    let producer = vibemon_testkit::events::producer(&topic.brokers);
    let send = |key: Vec<u8>, value: Vec<u8>, headers: Vec<(String, String)>| {
        let producer = producer.clone();
        let name = topic.name.clone();
        async move {
            let mut h = OwnedHeaders::new();
            for (k, v) in &headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            producer
                .send(
                    FutureRecord::to(&name).key(&key).payload(&value).headers(h),
                    Duration::from_secs(10),
                )
                .await
                .expect("acknowledged");
        }
    };
    let first = &records[0];
    let key = first.key.clone().unwrap();
    send(
        key.clone(),
        first.payload.clone().unwrap(),
        first.headers.clone(),
    )
    .await;

    let mut v4: Value = serde_json::from_slice(first.payload.as_deref().unwrap()).unwrap();
    let id = Uuid::now_v7().to_string();
    v4["schema_version"] = json!(4);
    v4["event_id"] = json!(id);
    v4["deployment_id"] = json!(id);
    let renamed = |h: &[(String, String)], id: &str, version: u32| -> Vec<(String, String)> {
        h.iter()
            .map(|(k, v)| {
                let v = match k.as_str() {
                    "ce_id" => id.to_owned(),
                    "ce_type" => format!("com.vibemonitor.deployment.reported.v{version}"),
                    "ce_dataschema" => format!(
                        "https://vibemonitor.dev/schemas/deployment-reported.v{version}.schema.json"
                    ),
                    _ => v.clone(),
                };
                (k.clone(), v)
            })
            .collect()
    };
    send(
        key.clone(),
        v4.to_string().into_bytes(),
        renamed(&first.headers, &id, 4),
    )
    .await;
    let id = Uuid::now_v7().to_string();
    send(
        key,
        b"{\"schema_version\": 1, not json".to_vec(),
        renamed(&first.headers, &id, 1),
    )
    .await;
    3
}

/// Produces a v1 event ingest would never write but the schema allows: an
/// RFC 3339 `deployed_at` in lowercase (`t`, `z`), an hour before the
/// acme/lower success that ingest wrote, so that a consumer comparing
/// strings (`t` > `T`) would pick it. Returns its deployment id.
async fn publish_lowercase_timestamp(topic: &TestTopic, records: &[ReadRecord]) -> String {
    let producer = vibemon_testkit::events::producer(&topic.brokers);
    // A v1 success in production (read_topic's order is not publish order).
    let payload = |r: &ReadRecord| -> Value {
        serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap()
    };
    let first = records
        .iter()
        .find(|r| {
            let v = payload(r);
            v["schema_version"] == json!(1)
                && v["environment"] == json!("production")
                && v["repository"] == json!("acme/api")
        })
        .expect("a v1 production report of acme/api");
    let mut event = payload(first);
    let id = Uuid::now_v7().to_string();
    event["event_id"] = json!(id);
    let deployment_id = Uuid::now_v7().to_string();
    event["deployment_id"] = json!(deployment_id);
    event["repository"] = json!("acme/lower");
    event["commit_sha"] = json!(sha('6'));
    event["status"] = json!("success");
    event["deployed_at"] = json!("2024-01-15t09:30:00z");
    let mut h = OwnedHeaders::new();
    for (k, v) in &first.headers {
        let v = if k == "ce_id" {
            id.as_str()
        } else {
            v.as_str()
        };
        h = h.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let value = event.to_string();
    producer
        .send(
            FutureRecord::to(&topic.name)
                .key(first.key.as_deref().unwrap())
                .payload(&value)
                .headers(h),
            Duration::from_secs(10),
        )
        .await
        .expect("acknowledged");
    deployment_id
}

/// `deployed_at` as the read API writes it, so the two compare exactly.
fn normalized(mut running: Value) -> Value {
    for envs in running.as_object_mut().unwrap().values_mut() {
        for repos in envs.as_object_mut().unwrap().values_mut() {
            for now in repos.as_object_mut().unwrap().values_mut() {
                let at: chrono::DateTime<chrono::Utc> =
                    now["deployed_at"].as_str().unwrap().parse().unwrap();
                now["deployed_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
            }
        }
    }
    running
}

/// The read API's answer in the consumers' summary shape.
async fn read_api_answer(ingest: &Ingest, tenant: &Tenant) -> (Value, Value) {
    let client = reqwest::Client::new();
    let get = |path: &str| {
        client
            .get(format!("http://{}{path}", ingest.addr))
            .header("X-Workspace-Key", &tenant.key)
            .send()
    };
    let envs: Value = get("/api/v1/environments")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut running = serde_json::Map::new();
    for env in envs["environments"].as_array().unwrap() {
        let mut repos = serde_json::Map::new();
        for d in env["deployed"].as_array().unwrap() {
            repos.insert(
                d["repo_full_name"].as_str().unwrap().to_owned(),
                json!({"deployment_id": d["deployment_id"], "commit_sha": d["commit_sha"],
                       "branch": d["branch"], "deployed_at": d["deployed_at"]}),
            );
        }
        if !repos.is_empty() {
            running.insert(env["name"].as_str().unwrap().to_owned(), repos.into());
        }
    }
    let page: Value = get("/api/v1/deployments?limit=100")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(page["next_cursor"].is_null(), "one page: {page}");
    let statuses: serde_json::Map<String, Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap().to_owned(), d["status"].clone()))
        .collect();
    (
        json!({ tenant.workspace_id.to_string(): running }),
        statuses.into(),
    )
}

/// Runs one consumer to the end of the topic (or its DLQ); returns its
/// summary, the last line of its output.
fn run_consumer(lang: &str, topic: &TestTopic, dlq: bool) -> Value {
    let group = format!("rca-{lang}-{}", Uuid::new_v4().simple());
    let mut cmd = Command::new("bash");
    cmd.arg(repo_dir().join("examples/consumers/run"))
        .arg(lang)
        .args(["--brokers", &topic.brokers, "--topic", &topic.name])
        .args(["--group", &group, "--until-caught-up"])
        .arg("--schemas")
        .arg(repo_dir().join("schemas"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if dlq {
        cmd.arg("--dlq");
    }
    let child = cmd.spawn().expect("run examples/consumers/run");
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{lang} consumer failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!(
        "{lang} consumer{} took {:?}",
        if dlq { " (dlq)" } else { "" },
        started.elapsed()
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("{lang}: the last line is not a summary ({e}):\n{stdout}\n{stderr}")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_in_three_languages_see_what_the_read_api_sees() {
    // Arrange: a tenant with two environments, ingest with native intake on.
    let (db, topic) = (TestDb::new().await, TestTopic::new(3).await);
    let tenant = Tenant::create(&db.pool, "ci").await;
    vibemon_store::reference::create_environment(&db.pool, tenant.workspace_id, "staging")
        .await
        .unwrap();
    let kafka = KafkaArgs::local(&topic.brokers, &topic.name);
    let mut config = vibemon_ingest::config::Config::new(&db.url, kafka.clone());
    config.integration_key = Some(SecretKey::parse(INTEGRATION_KEY).unwrap());
    let ingest = Ingest::spawn_with(config).await;

    // Act: events of every version through ingest, then the oddities.
    let published = publish_through_ingest(&db, &tenant, &ingest).await;
    let records = read_topic(
        &topic.brokers,
        &topic.name,
        published,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(records.len(), published);
    assert_headers_as_documented(&records);
    let odd = publish_oddities(&topic, &records).await;
    let lowercase = publish_lowercase_timestamp(&topic, &records).await;
    let group = format!("consumers-{}", Uuid::new_v4().simple());
    Projector::until_caught_up(&db.url, kafka, &group).await;
    let (running, statuses) = read_api_answer(&ingest, &tenant).await;
    let dead = read_topic(&topic.brokers, &topic.dlq(), 2, Duration::from_secs(10)).await;

    let topic = &topic;
    let summaries: Vec<(&str, Value, Value)> = std::thread::scope(|s| {
        let runs: Vec<_> = ["python", "go", "java"]
            .into_iter()
            .map(|lang| {
                s.spawn(move || {
                    (
                        lang,
                        run_consumer(lang, topic, false),
                        run_consumer(lang, topic, true),
                    )
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });

    // Assert: the read API's answer, exactly, and the DLQ as it is.
    assert_eq!(dead.len(), 2, "the v4 event and the non-JSON record");
    let (dlq_names, dlq_required) = documented_headers("deadLetterHeaders");
    for r in &dead {
        let present: BTreeSet<String> = r.headers.iter().map(|(k, _)| k.clone()).collect();
        assert!(
            present.is_subset(&dlq_names),
            "the DLQ headers are the document's: {present:?}"
        );
        assert!(
            dlq_required.is_subset(&present),
            "every required DLQ header is there: {present:?}"
        );
    }
    let expected_dead: Vec<Value> = dead
        .iter()
        .map(|r| {
            json!({"reason_class": header(r, "dlq_reason_class"), "reason": header(r, "dlq_reason"),
                   "original_topic": header(r, "dlq_original_topic"),
                   "original_partition": header(r, "dlq_original_partition").parse::<i64>().unwrap(),
                   "original_offset": header(r, "dlq_original_offset").parse::<i64>().unwrap()})
        })
        .collect();
    let classes: BTreeSet<&str> = dead.iter().map(|r| header(r, "dlq_reason_class")).collect();
    assert_eq!(classes, BTreeSet::from(["invalid", "unsupported_version"]));
    // The answer itself is what the histories say: the latest success by
    // `deployed_at` (a late older report does not win), an external
    // deployment at its final status, the v2 and v3 events' commits.
    let here = &running[tenant.workspace_id.to_string()];
    assert_eq!(
        here["production"]["acme/api"]["commit_sha"],
        json!(sha('b'))
    );
    assert_eq!(
        here["production"]["acme/web"]["commit_sha"],
        json!(sha('f'))
    );
    assert_eq!(here["staging"]["acme/api"]["commit_sha"], json!(sha('d')));
    assert_eq!(
        here["staging"]["root/test-deployment-webhooks"]["commit_sha"],
        "279484c09fbe69ededfced8c1bb6e6d24616b468"
    );
    // A success overturned by a later failure of the same deployment leaves
    // nothing of that repository running; a second success report of one
    // deployment moves its commit and time; a lowercase timestamp is an
    // instant like any other (an hour before, so it does not win).
    assert!(here["production"].get("acme/flip").is_none(), "{running}");
    assert_eq!(
        here["production"]["acme/twice"]["commit_sha"],
        json!(sha('4'))
    );
    assert_eq!(
        here["production"]["acme/twice"]["deployed_at"],
        json!("2026-02-02T10:00:00Z")
    );
    assert_eq!(
        here["production"]["acme/lower"]["commit_sha"],
        json!(sha('5'))
    );
    assert_eq!(statuses[&lowercase], json!("success"), "{statuses}");
    let events = published + 1;
    for (lang, summary, dlq) in &summaries {
        assert_eq!(
            normalized(summary["running"].clone()),
            running,
            "{lang}: what is running where"
        );
        assert_eq!(summary["deployments"], statuses, "{lang}: deployments");
        assert_eq!(
            (
                &summary["events"],
                &summary["duplicates"],
                &summary["skipped"],
                &summary["invalid"]
            ),
            (&json!(events), &json!(1), &json!(1), &json!(1)),
            "{lang}: {summary}"
        );
        let mut got = dlq["dead_letters"].as_array().unwrap().clone();
        got.sort_by_key(|d| {
            (
                d["original_partition"].as_i64(),
                d["original_offset"].as_i64(),
            )
        });
        let mut want = expected_dead.clone();
        want.sort_by_key(|d| {
            (
                d["original_partition"].as_i64(),
                d["original_offset"].as_i64(),
            )
        });
        assert_eq!(got, want, "{lang}: the DLQ");
    }
    assert_eq!(odd, 3);
    ingest.stop().await;
}

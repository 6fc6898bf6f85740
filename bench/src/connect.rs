//! Part 5's peer: Kafka Connect in standalone mode running the Debezium JDBC
//! sink connector in upsert mode, fed the same events into the same
//! `deployments` table (with its indexes) of a fresh database.
//!
//! Connect's JDBC sinks need a schema with every record. Without a schema
//! registry that means JsonConverter's envelope (`{"schema": …, "payload":
//! …}`), so the same events are preloaded once more in that form, flattened
//! to the table's columns. The clock runs from the first row appearing to
//! the last, which leaves out the JVM's and the connector's start: generous
//! to Connect.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use vibemon_schemas::DeploymentReported;
use vibemon_testkit::{TestDb, TestTopic};

use crate::process::{free_port, Service};
use crate::projector::{count, preload};
use crate::report::{Report, Row};
use crate::Options;

/// Where `bench/run` put Connect's jars and the connector plugin.
fn connect_libs(opts: &Options) -> PathBuf {
    opts.cache().join("connect-4.4.0/libs")
}

fn plugin_path(opts: &Options) -> PathBuf {
    opts.cache().join("connect-plugins")
}

/// The table's columns as Connect schema fields: (name, type, optional).
const FIELDS: [(&str, &str, bool); 16] = [
    ("id", "string", false),
    ("workspace_id", "string", false),
    ("environment_id", "string", false),
    ("environment", "string", false),
    ("repo_full_name", "string", false),
    ("branch", "string", true),
    ("commit_sha", "string", true),
    ("status", "string", false),
    ("source", "string", false),
    ("deployed_at", "string", false),
    ("extra_data", "string", false),
    ("external_id", "string", true),
    ("created_at", "string", false),
    ("updated_at", "string", false),
    ("status_rank", "int16", false),
    ("last_event_id", "string", false),
];

/// One event as a JsonConverter envelope of its `deployments` row.
pub fn envelope(e: &DeploymentReported) -> Vec<u8> {
    let mut fields: Vec<Value> = FIELDS
        .iter()
        .map(|(name, ty, optional)| json!({"field": name, "type": ty, "optional": optional}))
        .collect();
    fields.push(json!({"field": "reports", "type": "int32", "optional": false}));
    let payload = json!({
        "id": e.deployment_id,
        "workspace_id": e.workspace_id,
        "environment_id": e.environment_id,
        "environment": e.environment.as_str(),
        "repo_full_name": e.repository.as_str(),
        "branch": e.branch.as_ref().map(|b| b.as_str()),
        "commit_sha": e.commit_sha.as_ref().map(|c| c.as_str()),
        "status": e.status.as_str(),
        "source": e.source.as_str(),
        "deployed_at": e.deployed_at.to_rfc3339(),
        "extra_data": Value::Object(e.extra_data.clone()).to_string(),
        "external_id": e.external_id.as_ref().map(|x| x.as_str()),
        "created_at": e.received_at.to_rfc3339(),
        "updated_at": e.received_at.to_rfc3339(),
        "status_rank": e.status.rank(),
        "last_event_id": e.event_id,
        "reports": 1,
    });
    serde_json::to_vec(&json!({
        "schema": {"type": "struct", "name": "deployment", "optional": false, "fields": fields},
        "payload": payload,
    }))
    .expect("JSON")
}

/// `postgres://user:password@host:port/db` as a JDBC URL, user and password.
fn jdbc(url: &str) -> anyhow::Result<(String, String, String)> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .context("a postgres:// URL")?;
    let (credentials, location) = rest.split_once('@').context("credentials in the URL")?;
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let location = location.split('?').next().unwrap_or(location);
    Ok((
        format!("jdbc:postgresql://{location}?stringtype=unspecified"),
        user.to_owned(),
        password.to_owned(),
    ))
}

pub async fn run(
    opts: &Options,
    events: &[DeploymentReported],
    report: &mut Report,
) -> anyhow::Result<()> {
    let libs = connect_libs(opts);
    let plugin = plugin_path(opts).join("debezium-connector-jdbc");
    if !libs.exists() || !plugin.exists() {
        bail!(
            "{} or {} is missing: bench/run fetches Connect and the Debezium JDBC sink",
            libs.display(),
            plugin.display()
        );
    }
    let n = events.len();
    let topic = TestTopic::new(6).await;
    eprintln!("connect: preloading {n} events as JsonConverter envelopes");
    preload(&topic, events, envelope).await?;
    let db = TestDb::new().await;

    let dir = opts.out.join("connect");
    std::fs::create_dir_all(&dir)?;
    let _ = std::fs::remove_file(dir.join("offsets"));
    let worker = format!(
        "bootstrap.servers={brokers}\n\
         key.converter=org.apache.kafka.connect.storage.StringConverter\n\
         value.converter=org.apache.kafka.connect.json.JsonConverter\n\
         value.converter.schemas.enable=true\n\
         offset.storage.file.filename={offsets}\n\
         plugin.path={plugins}\n\
         listeners=http://127.0.0.1:{port}\n",
        brokers = topic.brokers,
        offsets = dir.join("offsets").display(),
        plugins = plugin_path(opts).display(),
        port = free_port(),
    );
    let (url, user, password) = jdbc(&db.url)?;
    let connector = format!(
        "name=bench-jdbc-sink\n\
         connector.class=io.debezium.connector.jdbc.JdbcSinkConnector\n\
         tasks.max=1\n\
         topics={topic}\n\
         connection.url={url}\n\
         connection.username={user}\n\
         connection.password={password}\n\
         insert.mode=upsert\n\
         primary.key.mode=record_value\n\
         primary.key.fields=id\n\
         schema.evolution=none\n\
         collection.name.format=deployments\n\
         batch.size=2000\n\
         use.time.zone=UTC\n",
        topic = topic.name,
    );
    std::fs::write(dir.join("worker.properties"), worker)?;
    std::fs::write(dir.join("connector.properties"), connector)?;

    let args: Vec<String> = vec![
        "-Xmx1g".into(),
        "-cp".into(),
        format!("{}/*", libs.display()),
        "org.apache.kafka.connect.cli.ConnectStandalone".into(),
        dir.join("worker.properties").display().to_string(),
        dir.join("connector.properties").display().to_string(),
    ];
    eprintln!("connect: standalone worker with the Debezium JDBC sink, upsert mode");
    let mut java = Service::start(
        "connect",
        std::path::Path::new("java"),
        &args,
        &[],
        &opts.out.join("connect.log"),
    )?;
    let launched = Instant::now();
    let mut first: Option<Instant> = None;
    let deadline = launched + Duration::from_secs(1800);
    loop {
        let rows = count(&db.pool, "deployments").await? as usize;
        if rows > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if rows >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!("Connect wrote {rows} of {n} rows in 30 minutes");
        }
        if let Some(status) = java.exited() {
            bail!(
                "Connect exited ({status}); see {}",
                opts.out.join("connect.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let done = Instant::now();
    let first = first.expect("rows appeared");
    let rss = java.stop().await;
    let rate = n as f64 / (done - first).as_secs_f64().max(0.001);
    eprintln!(
        "connect: {n} rows in {:.1} s after the first ({:.1} s from launch) = {rate:.0}/s",
        (done - first).as_secs_f64(),
        (done - launched).as_secs_f64()
    );
    report.rows.push(
        Row::throughput(
            "projector",
            format!("Kafka Connect 4.4.0 + Debezium JDBC sink, upsert, {n} events"),
            rate,
            "events/s",
        )
        .with_rss(rss)
        .with_note(format!(
            "history table only; timed from first row ({:.1} s after launch)",
            (first - launched).as_secs_f64()
        )),
    );
    report.figures.connect_rate = Some(rate);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_becomes_a_jdbc_url_with_its_credentials() {
        let (url, user, password) =
            jdbc("postgres://vibemon:vibemon@127.0.0.1:5432/test_1?sslmode=disable").unwrap();
        assert_eq!(
            url,
            "jdbc:postgresql://127.0.0.1:5432/test_1?stringtype=unspecified"
        );
        assert_eq!((user.as_str(), password.as_str()), ("vibemon", "vibemon"));
    }

    #[test]
    fn an_envelope_carries_a_schema_field_for_every_payload_field() {
        let e = crate::projector::events(1).remove(0);
        let v: Value = serde_json::from_slice(&envelope(&e)).unwrap();
        let fields = v["schema"]["fields"].as_array().unwrap();
        let payload = v["payload"].as_object().unwrap();
        assert_eq!(fields.len(), payload.len());
        for f in fields {
            assert!(payload.contains_key(f["field"].as_str().unwrap()));
        }
    }
}

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

use crate::history;
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

/// One event as a JsonConverter envelope of its `deployments` row: a
/// schema field per column (strings, which Postgres casts, but for the two
/// integer columns) and the row as the payload.
pub fn envelope(e: &DeploymentReported) -> Vec<u8> {
    let connect_type = |sql_type: &str| match sql_type {
        "int2" => "int16",
        "int4" => "int32",
        _ => "string",
    };
    let mut fields = Vec::with_capacity(history::COLUMNS.len());
    let mut payload = serde_json::Map::new();
    for (column, value) in history::COLUMNS.iter().zip(history::values(e)) {
        let ty = connect_type(column.sql_type);
        fields.push(json!({"field": column.name, "type": ty, "optional": column.nullable}));
        let value = match (ty, value) {
            (_, None) => Value::Null,
            ("string", Some(s)) => Value::String(s),
            (_, Some(n)) => Value::Number(n.parse::<i64>().expect("an integer column").into()),
        };
        payload.insert(column.name.to_owned(), value);
    }
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

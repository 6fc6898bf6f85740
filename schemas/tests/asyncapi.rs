//! Holds `asyncapi.json`, the topics' contract for consumers in other
//! languages, to the AsyncAPI CLI and to the code: it validates with
//! `asyncapi validate` (installed by `asyncapi-cli/validate`), every event
//! version is a message whose payload is exactly its published JSON Schema
//! file, the headers it documents are the ones `cloudevents_headers` writes
//! (and their values fit it), the key is `partition_key`'s, and the topics'
//! names and retention are `Topic`'s. `vibemon/tests/it/consumers.rs` checks
//! the same headers on records the real ingest and projector wrote.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Map, Value};
use vibemon_schemas::event::{
    request_fingerprint, TraceParent, REQUEST_FINGERPRINT_HEADER, TRACEPARENT_HEADER,
    TRACESTATE_HEADER,
};
use vibemon_schemas::topic::DEFAULT_TOPIC;
use vibemon_schemas::{DeploymentReported, Topic, LATEST_SCHEMA_VERSION};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn doc() -> Value {
    serde_json::from_str(&std::fs::read_to_string(crate_dir().join("asyncapi.json")).unwrap())
        .unwrap()
}

fn versions() -> impl Iterator<Item = u32> {
    1..=LATEST_SCHEMA_VERSION
}

/// A schema of the document's `components.schemas`, as a validator.
fn component(name: &str) -> (Value, jsonschema::Validator) {
    let schema = doc()["components"]["schemas"][name].clone();
    assert!(schema.is_object(), "components.schemas.{name}");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    (schema, validator)
}

/// An event of `version` as ingest writes it, from its golden fixtures.
fn event_of(version: u32) -> DeploymentReported {
    let dir = crate_dir().join("fixtures");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(&format!("deployment-reported.v{version}.")))
        .collect();
    names.sort();
    let name = names
        .first()
        .unwrap_or_else(|| panic!("a v{version} fixture"));
    DeploymentReported::decode(&std::fs::read(dir.join(name)).unwrap()).unwrap()
}

fn names(schema: &Value, field: &str) -> BTreeSet<String> {
    match &schema[field] {
        Value::Object(m) => m.keys().cloned().collect(),
        Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
        other => panic!("{field}: {other}"),
    }
}

#[test]
fn the_asyncapi_document_validates_with_the_asyncapi_cli() {
    let out = Command::new("bash")
        .arg(crate_dir().join("asyncapi-cli/validate"))
        .arg(crate_dir().join("asyncapi.json"))
        .output()
        .expect("bash runs schemas/asyncapi-cli/validate");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "asyncapi validate failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("asyncapi.json is valid"),
        "{stdout}\n{stderr}"
    );
}

#[test]
fn every_event_version_is_a_message_whose_payload_is_its_published_schema() {
    let doc = doc();
    let channel = &doc["channels"]["deployments"];
    let listed: BTreeSet<String> = names(channel, "messages");
    let want: BTreeSet<String> = versions()
        .map(|v| format!("deploymentReportedV{v}"))
        .collect();
    assert_eq!(listed, want, "the channel's messages are every version");
    let on_disk: BTreeSet<String> = std::fs::read_dir(crate_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("deployment-reported.v") && n.ends_with(".schema.json"))
        .collect();
    let mut referenced = BTreeSet::new();
    for v in versions() {
        let message = &doc["components"]["messages"][format!("deploymentReportedV{v}")];
        let payload = &message["payload"];
        let file = format!("deployment-reported.v{v}.schema.json");
        assert_eq!(payload["schema"], json!({ "$ref": format!("./{file}") }));
        assert_eq!(
            payload["schemaFormat"],
            "application/schema+json;version=draft-07"
        );
        assert_eq!(
            message["headers"]["$ref"],
            format!("#/components/schemas/cloudEventsHeadersV{v}")
        );
        referenced.insert(file);
    }
    assert_eq!(referenced, on_disk, "every schema file is some message's");
}

#[test]
fn the_documented_headers_are_the_ones_ingest_writes() {
    for v in versions() {
        let event = event_of(v);
        assert_eq!(event.schema_version, v);
        let (schema, validator) = component(&format!("cloudEventsHeadersV{v}"));
        let written: Map<String, Value> = event
            .cloudevents_headers()
            .into_iter()
            .map(|(k, val)| (k.to_owned(), Value::from(val)))
            .collect();
        let written_names: BTreeSet<String> = written.keys().cloned().collect();
        assert_eq!(names(&schema, "required"), written_names, "v{v} required");
        let mut optional = names(&schema, "properties");
        optional.retain(|n| !written_names.contains(n));
        // The trace headers are optional in the document because records
        // written before them have none; ingest now writes `ce_traceparent`
        // on every record (ingest's and vibemon's tests check that).
        assert_eq!(
            optional,
            BTreeSet::from([
                REQUEST_FINGERPRINT_HEADER.to_owned(),
                TRACEPARENT_HEADER.to_owned(),
                TRACESTATE_HEADER.to_owned(),
            ]),
            "v{v}: the optional headers"
        );
        let mut with_fingerprint = written.clone();
        with_fingerprint.insert(
            REQUEST_FINGERPRINT_HEADER.to_owned(),
            request_fingerprint(b"{}").into(),
        );
        let traceparent = TraceParent::new(u128::MAX - 7, 0x00f0_67aa_0ba9_02b7, 1).unwrap();
        let mut traced = with_fingerprint.clone();
        traced.insert(
            TRACEPARENT_HEADER.to_owned(),
            traceparent.to_string().into(),
        );
        traced.insert(TRACESTATE_HEADER.to_owned(), "vendor=a,other=b".into());
        for headers in [written.clone(), with_fingerprint, traced.clone()] {
            let headers = Value::Object(headers);
            let errors: Vec<String> = validator
                .iter_errors(&headers)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "v{v} {headers}: {errors:?}");
        }
        // A traceparent in another format is not the document's.
        for bad in [
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "not a traceparent",
        ] {
            let mut h = traced.clone();
            h.insert(TRACEPARENT_HEADER.to_owned(), bad.into());
            assert!(!validator.is_valid(&Value::Object(h)), "v{v} {bad}");
        }
        // Another version's type is not this message's.
        let mut wrong = event.clone();
        wrong.schema_version = v % LATEST_SCHEMA_VERSION + 1;
        let other: Map<String, Value> = wrong
            .cloudevents_headers()
            .into_iter()
            .map(|(k, val)| (k.to_owned(), Value::from(val)))
            .collect();
        assert!(!validator.is_valid(&Value::Object(other)), "v{v}");
    }
}

#[test]
fn the_documented_key_is_the_partition_key() {
    let (_, validator) = component("environmentKey");
    for v in versions() {
        let key = event_of(v).partition_key();
        assert!(validator.is_valid(&json!(key)), "{key}");
    }
    assert!(!validator.is_valid(&json!("a:b")));
    let doc = doc();
    for v in versions() {
        assert_eq!(
            doc["components"]["messages"][format!("deploymentReportedV{v}")]["bindings"]["kafka"]
                ["key"]["$ref"],
            "#/components/schemas/environmentKey"
        );
    }
}

#[test]
fn the_channels_are_the_topics_with_their_retention() {
    let doc = doc();
    for (channel, topic) in [
        ("deployments", Topic::Deployments),
        ("deadLetters", Topic::DeadLetters),
    ] {
        let c = &doc["channels"][channel];
        let name = topic.name(DEFAULT_TOPIC);
        assert_eq!(c["address"], name.as_str());
        assert_eq!(c["bindings"]["kafka"]["topic"], name.as_str());
        let documented = c["bindings"]["kafka"]["topicConfiguration"]
            .as_object()
            .unwrap();
        let config = topic.config();
        assert_eq!(documented.len(), config.len(), "{channel}");
        for (key, value) in config {
            let want = match *key {
                "cleanup.policy" => json!(value.split(',').collect::<Vec<_>>()),
                _ => json!(value.parse::<i64>().unwrap()),
            };
            assert_eq!(documented[*key], want, "{channel} {key}");
        }
    }
}

//! Holds the event's versions to the compatibility policy of
//! `docs/event-versions.md`: the topic is BACKWARD_TRANSITIVE for readers,
//! versions only add optional properties, and writers write the lowest
//! version that carries an event.
//!
//! The checks are mechanical, between the kept schema files: every released
//! version's file is present and the released ones are unchanged, each
//! version keeps every property of the one before with the same sub-schema
//! and the same `required`, and the current decoder reads every fixture of
//! every version.

use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};
use vibemon_schemas::{DeploymentReported, EVENT_SCHEMAS, LATEST_SCHEMA_VERSION, SCHEMA_VERSION};

/// SHA-256 of each released schema file as it was released. A released
/// version never changes: a consumer may have compiled it into its code.
/// Version 2 is pinned as it ships (100 commits at most, 64-character
/// commit timestamps); version 3 adds the sources `github` and `gitlab`.
const RELEASED: &[(u32, &str)] = &[
    (
        1,
        "6990c64fecf9ccbdf76143b3fb9a0d89d4f7e34bcdb251f3bc559d8244308104",
    ),
    (
        2,
        "19fb0a7bb8d8990b96f1ea8a5e134c02f456b12fda1b543f8c2f717839bdf9d4",
    ),
    (
        3,
        "00d2ceebc1da8d5960028e23eea590bfabf76adbcac7484120860f3650a68b76",
    ),
];

#[test]
fn every_version_the_decoder_reads_is_pinned() {
    for (version, _) in &EVENT_SCHEMAS {
        assert!(
            RELEASED.iter().any(|(v, _)| v == version),
            "deployment-reported.v{version}.schema.json is not pinned in RELEASED"
        );
    }
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema_file(version: u32) -> PathBuf {
    crate_dir().join(format!("deployment-reported.v{version}.schema.json"))
}

fn schema(version: u32) -> Value {
    let text = std::fs::read_to_string(schema_file(version)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every fixture's file name, version and bytes.
fn fixtures() -> Vec<(String, u32, Vec<u8>)> {
    let dir = crate_dir().join("fixtures");
    let mut out: Vec<(String, u32, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let version = name
                .strip_prefix("deployment-reported.v")
                .and_then(|r| r.split('.').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name}: not deployment-reported.v<N>.<case>.json"));
            (name, version, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_released_version_has_its_schema_file_and_it_never_changes() {
    let versions: Vec<u32> = EVENT_SCHEMAS.iter().map(|(v, _)| *v).collect();
    let expected: Vec<u32> = (SCHEMA_VERSION..=LATEST_SCHEMA_VERSION).collect();
    assert_eq!(versions, expected, "one kept schema per version, in order");
    for (version, embedded) in EVENT_SCHEMAS {
        let on_disk = std::fs::read_to_string(schema_file(version)).unwrap();
        assert_eq!(on_disk, embedded, "v{version}");
        let id =
            format!("https://vibemonitor.dev/schemas/deployment-reported.v{version}.schema.json");
        assert_eq!(
            schema(version)["$id"],
            Value::from(id.clone()),
            "v{version}'s $id"
        );
        assert_eq!(vibemon_schemas::event::ce_dataschema(version), id);
        assert_eq!(
            schema(version)["properties"]["schema_version"]["const"],
            version
        );
    }
    for (version, pinned) in RELEASED {
        let digest = Sha256::digest(std::fs::read(schema_file(*version)).unwrap());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            &hex, pinned,
            "deployment-reported.v{version}.schema.json changed after its release; add a version instead"
        );
    }
}

#[test]
fn each_version_keeps_every_property_of_the_one_before_and_adds_only_optional_ones_or_enum_values()
{
    for pair in EVENT_SCHEMAS.windows(2) {
        let (old_v, new_v) = (pair[0].0, pair[1].0);
        let (old, new) = (schema(old_v), schema(new_v));
        let (old_props, new_props) = (
            old["properties"].as_object().unwrap(),
            new["properties"].as_object().unwrap(),
        );
        let mut widened = Vec::new();
        for (name, sub) in old_props.iter().filter(|(n, _)| *n != "schema_version") {
            let now = new_props.get(name);
            if now == Some(sub) {
                continue;
            }
            // The one other change allowed: an enum that gains values, so
            // every value the old version allowed is still allowed.
            let values =
                |s: Option<&Value>| -> Option<Vec<Value>> { s?.get("enum")?.as_array().cloned() };
            let (before, after) = (values(Some(sub)), values(now));
            let kept_every_value = before
                .as_ref()
                .zip(after.as_ref())
                .is_some_and(|(b, a)| a.len() > b.len() && a.starts_with(b));
            assert!(
                kept_every_value && now.unwrap().as_object().unwrap().len() == 1,
                "v{new_v} changed {name}: only adding optional properties or enum values is allowed"
            );
            widened.push(name);
        }
        assert_eq!(
            new["required"], old["required"],
            "v{new_v}: new properties stay optional"
        );
        assert_eq!(new["additionalProperties"], Value::Bool(false));
        for (name, def) in old["$defs"].as_object().unwrap() {
            assert_eq!(
                new["$defs"].get(name),
                Some(def),
                "v{new_v} changed $defs/{name}"
            );
        }
        let added: Vec<&String> = new_props
            .keys()
            .filter(|k| !old_props.contains_key(*k))
            .collect();
        assert!(
            !added.is_empty() || !widened.is_empty(),
            "v{new_v} adds nothing; it needs no version"
        );
    }
}

#[test]
fn the_current_decoder_reads_every_fixture_of_every_version() {
    let all = fixtures();
    for version in SCHEMA_VERSION..=LATEST_SCHEMA_VERSION {
        assert!(
            all.iter().any(|(_, v, _)| *v == version),
            "no fixture of v{version}"
        );
    }
    for (name, version, bytes) in all {
        let event = DeploymentReported::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(event.schema_version, version, "{name}");
        assert_eq!(
            event.version_needed(),
            version,
            "{name}: the lowest version that carries it"
        );
        let headers = event.cloudevents_headers();
        let header = |n: &str| headers.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        assert_eq!(
            header("ce_type"),
            format!("com.vibemonitor.deployment.reported.v{version}")
        );
        assert_eq!(
            header("ce_dataschema"),
            schema(version)["$id"].as_str().unwrap()
        );
    }
}

#[test]
fn a_version_1_event_is_written_byte_for_byte_as_before_version_2() {
    for (name, _, bytes) in fixtures().into_iter().filter(|(_, v, _)| *v == 1) {
        let event = DeploymentReported::decode(&bytes).unwrap();
        // The fixtures are pretty-printed; what was written is their compact form.
        let compact =
            serde_json::to_vec(&serde_json::from_slice::<Value>(&bytes).unwrap()).unwrap();
        let written = event.encode();
        let keys = |b: &[u8]| -> Vec<String> {
            serde_json::from_slice::<serde_json::Map<String, Value>>(b)
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(keys(&written), keys(&compact), "{name}: the same fields");
        assert!(
            !String::from_utf8_lossy(&written).contains("commits"),
            "{name}: no version-2 field is written"
        );
        let again = DeploymentReported::decode(&written).unwrap();
        assert_eq!(again.encode(), written, "{name}: re-encoding is stable");
    }
    let minimal = crate_dir().join("fixtures/deployment-reported.v1.minimal.json");
    let event = DeploymentReported::decode(&std::fs::read(minimal).unwrap()).unwrap();
    assert_eq!(event.version_needed(), 1);
    assert_eq!(
        String::from_utf8(event.encode()).unwrap(),
        V1_MINIMAL_AS_WRITTEN,
        "the bytes builds before version 2 wrote for this event"
    );
}

/// `fixtures/deployment-reported.v1.minimal.json` as every build since
/// version 1 writes it: compact, in the struct's field order, nothing after
/// `api_key_name`.
const V1_MINIMAL_AS_WRITTEN: &str = concat!(
    r#"{"schema_version":1,"event_id":"0193f5d3-0000-7000-8000-000000000001","#,
    r#""deployment_id":"0193f5d3-0000-7000-8000-000000000001","#,
    r#""workspace_id":"0193f5d0-1111-7aaa-8bbb-cccccccccccc","#,
    r#""environment_id":"0193f5d0-2222-7aaa-8bbb-dddddddddddd","environment":"staging","#,
    r#""repository":"group/subgroup/project","branch":null,"commit_sha":null,"#,
    r#""status":"success","source":"webhook","deployed_at":"2024-01-15T10:31:00Z","#,
    r#""extra_data":{},"external_id":null,"received_at":"2024-01-15T10:31:00Z","#,
    r#""api_key_id":"0193f5d0-3333-7aaa-8bbb-eeeeeeeeeeee","api_key_name":"shell"}"#
);

#[test]
fn a_version_1_event_carrying_a_version_2_field_is_refused() {
    let (_, _, bytes) = fixtures().into_iter().find(|(_, v, _)| *v == 1).unwrap();
    let v2: Value = serde_json::from_slice(
        &fixtures()
            .into_iter()
            .find(|(n, _, _)| n.contains("v2.commits"))
            .unwrap()
            .2,
    )
    .unwrap();
    for field in ["previous_commit_sha", "commits"] {
        let mut event: Value = serde_json::from_slice(&bytes).unwrap();
        event[field] = v2[field].clone();
        let err = DeploymentReported::decode(&serde_json::to_vec(&event).unwrap()).unwrap_err();
        assert_eq!(err.class(), "invalid", "{field}: {err}");
        assert!(err.to_string().contains(field), "{err}");
    }
}

#[test]
fn an_event_of_native_intake_needs_version_3_and_an_older_one_claiming_it_is_refused() {
    let (_, _, bytes) = fixtures()
        .into_iter()
        .find(|(n, _, _)| n.contains("v3.github"))
        .unwrap();
    for older in [1, 2] {
        let mut event: Value = serde_json::from_slice(&bytes).unwrap();
        event["schema_version"] = Value::from(older);
        let err = DeploymentReported::decode(&serde_json::to_vec(&event).unwrap()).unwrap_err();
        assert_eq!(err.class(), "invalid", "v{older}: {err}");
        assert!(
            err.to_string().contains("source needs schema_version 3"),
            "{err}"
        );
    }
}

#[test]
fn a_version_newer_than_this_build_is_unsupported_not_invalid() {
    let (_, _, bytes) = fixtures()
        .into_iter()
        .find(|(n, _, _)| n.contains("v2.commits"))
        .unwrap();
    let mut event: Value = serde_json::from_slice(&bytes).unwrap();
    event["schema_version"] = Value::from(LATEST_SCHEMA_VERSION + 1);
    let err = DeploymentReported::decode(&serde_json::to_vec(&event).unwrap()).unwrap_err();
    assert_eq!(err.class(), "unsupported_version", "{err}");
}

//! Holds the Rust event type and the JSON Schema files to one contract: every
//! golden fixture validates against the schema of its version and
//! round-trips through the Rust type unchanged, and what Rust writes
//! validates against the schema of the version it declares.

use std::path::PathBuf;

use serde_json::Value;
use vibemon_schemas::{DeploymentReported, EVENT_SCHEMAS};

fn fixtures() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("fixtures/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((
                path.display().to_string(),
                serde_json::from_str(&text).unwrap(),
            ));
        }
    }
    assert!(out.len() >= 3, "expected the golden fixtures in {dir:?}");
    out
}

/// The validator of the schema an event declares by its `schema_version`.
struct Validators(Vec<(u64, jsonschema::Validator)>);

impl Validators {
    fn for_event(&self, event: &Value) -> &jsonschema::Validator {
        let version = event["schema_version"].as_u64().unwrap_or(1);
        &self.0.iter().find(|(v, _)| *v == version).unwrap().1
    }

    fn iter_errors(&self, event: &Value) -> Vec<String> {
        let v = self.for_event(event);
        v.iter_errors(event).map(|e| e.to_string()).collect()
    }

    fn is_valid(&self, event: &Value) -> bool {
        self.for_event(event).is_valid(event)
    }
}

fn validator() -> Validators {
    let build = |text: &str| {
        let schema: Value = serde_json::from_str(text).unwrap();
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("the schema file is a valid draft 2020-12 schema")
    };
    Validators(
        EVENT_SCHEMAS
            .iter()
            .map(|(v, text)| (u64::from(*v), build(text)))
            .collect(),
    )
}

#[test]
fn every_golden_fixture_satisfies_the_json_schema() {
    let v = validator();
    for (name, fixture) in fixtures() {
        let errors = v.iter_errors(&fixture);
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

#[test]
fn every_golden_fixture_round_trips_through_the_rust_type() {
    for (name, fixture) in fixtures() {
        let bytes = serde_json::to_vec(&fixture).unwrap();
        let event = DeploymentReported::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again: Value = serde_json::from_slice(&event.encode()).unwrap();
        // Timestamps may be re-rendered (".2Z" vs ".200Z"), so compare those as instants.
        for field in ["deployed_at", "received_at"] {
            let a = chrono::DateTime::parse_from_rfc3339(fixture[field].as_str().unwrap()).unwrap();
            let b = chrono::DateTime::parse_from_rfc3339(again[field].as_str().unwrap()).unwrap();
            assert_eq!(a, b, "{name}: {field}");
        }
        let strip = |mut v: Value| {
            let o = v.as_object_mut().unwrap();
            o.remove("deployed_at");
            o.remove("received_at");
            for commit in o
                .get_mut("commits")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                for field in ["committed_at", "authored_at"] {
                    let t = commit.get(field).and_then(Value::as_str);
                    let t = t.map(|t| {
                        chrono::DateTime::parse_from_rfc3339(t)
                            .unwrap()
                            .timestamp_micros()
                    });
                    commit[field] = t.map(Value::from).unwrap_or(Value::Null);
                }
            }
            v
        };
        assert_eq!(strip(fixture.clone()), strip(again), "{name}");
    }
}

#[test]
fn what_rust_writes_satisfies_the_json_schema() {
    let v = validator();
    for (name, fixture) in fixtures() {
        let event = DeploymentReported::decode(&serde_json::to_vec(&fixture).unwrap()).unwrap();
        let written: Value = serde_json::from_slice(&event.encode()).unwrap();
        let errors = v.iter_errors(&written);
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

#[test]
fn the_schema_refuses_what_the_decoder_refuses() {
    let v = validator();
    let (_, mut bad) = fixtures().remove(0);
    bad["commit_sha"] = Value::from("ABC");
    assert!(!v.is_valid(&bad));
    assert!(DeploymentReported::decode(&serde_json::to_vec(&bad).unwrap()).is_err());
    let (_, mut bad) = fixtures().remove(0);
    bad["status"] = Value::from("done");
    assert!(!v.is_valid(&bad));
    assert!(DeploymentReported::decode(&serde_json::to_vec(&bad).unwrap()).is_err());
}

/// A validator of one component schema of the OpenAPI document, as a client
/// generated from `/openapi.json` would check an answer.
fn openapi_component(name: &str) -> jsonschema::Validator {
    let mut doc: Value = serde_json::from_str(vibemon_schemas::OPENAPI_JSON).unwrap();
    doc["$ref"] = Value::from(format!("#/components/schemas/{name}"));
    jsonschema::options()
        .should_validate_formats(true)
        .build(&doc)
        .expect("the OpenAPI document's schemas compile")
}

#[test]
fn the_403_body_rust_writes_fits_the_openapi_forbidden_schema_for_every_scope() {
    use vibemon_schemas::api::Forbidden;
    let v = openapi_component("Forbidden");
    for scope in ["ingest", "read", "admin"] {
        let body = serde_json::to_value(Forbidden {
            detail: format!("This API key lacks the '{scope}' scope"),
            missing_scope: scope.to_owned(),
        })
        .unwrap();
        let errors: Vec<String> = v.iter_errors(&body).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{scope}: {errors:?}");
        // And back: what the document allows, the Rust type reads.
        let again: Forbidden = serde_json::from_value(body).unwrap();
        assert_eq!(again.missing_scope, scope);
    }
}

#[test]
fn the_openapi_forbidden_schema_refuses_an_unknown_scope_a_missing_field_or_an_extra_one() {
    let v = openapi_component("Forbidden");
    let ok = serde_json::json!({"detail": "no", "missing_scope": "read"});
    assert!(v.is_valid(&ok));
    for bad in [
        serde_json::json!({"detail": "no", "missing_scope": "write"}),
        serde_json::json!({"detail": "no", "missing_scope": "Read"}),
        serde_json::json!({"detail": "no"}),
        serde_json::json!({"missing_scope": "read"}),
        serde_json::json!({"detail": "no", "missing_scope": "read", "scopes": ["ingest"]}),
    ] {
        assert!(!v.is_valid(&bad), "accepted {bad}");
    }
}

#[test]
fn every_operation_that_takes_a_workspace_key_documents_its_403_and_its_scope() {
    let doc: Value = serde_json::from_str(vibemon_schemas::OPENAPI_JSON).unwrap();
    let scheme = doc["components"]["securitySchemes"]["WorkspaceKey"]["description"]
        .as_str()
        .unwrap();
    for scope in ["ingest", "read", "admin"] {
        assert!(scheme.contains(&format!("`{scope}`")), "{scheme}");
    }
    let mut keyed = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let security = op["security"].as_array().cloned().unwrap_or_default();
            if !security.iter().any(|s| s.get("WorkspaceKey").is_some()) {
                continue;
            }
            keyed += 1;
            let forbidden = &op["responses"]["403"]["content"]["application/json"]["schema"];
            assert_eq!(
                forbidden["$ref"], "#/components/schemas/Forbidden",
                "{method} {path}"
            );
            let description = op["description"].as_str().unwrap_or("");
            assert!(
                ["ingest", "read", "admin"]
                    .iter()
                    .any(|s| description.contains(&format!("`{s}` scope"))),
                "{method} {path}: the description names no scope: {description:?}"
            );
        }
    }
    assert!(keyed >= 6, "only {keyed} keyed operations found");
}

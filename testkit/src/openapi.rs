//! Answers held to the published OpenAPI document: what a client generated
//! from `/openapi.json` would accept.

use serde_json::{json, Value};

/// Panics, naming each problem, unless `value` fits the component schema
/// `component` of `schemas/openapi.json`.
pub fn assert_fits(component: &str, value: &Value) {
    let mut doc: Value = serde_json::from_str(vibemon_schemas::OPENAPI_JSON).unwrap();
    doc["$ref"] = json!(format!("#/components/schemas/{component}"));
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&doc)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{component}: {errors:?}\n{value}");
}

//! Holds the published JSON Schemas (every event version) and OpenAPI
//! document to the Rust rules, as validators in other languages read them.
//!
//! The character classes in the `pattern`s are generated here from
//! `fields::forbidden_char` and `char::is_whitespace`, so the files cannot
//! drift from the rule; every pattern stays in the regex subset that all
//! JSON Schema validators share (literal characters, `[...]`, `^`, `$`,
//! groups, alternation, quantifiers: no `\p{..}`, no escapes at all). Then
//! `interop/run` checks both documents with Python's `jsonschema` and Node's
//! `ajv`: they compile, every golden fixture is valid, a corpus of broken
//! events gets the Rust decoder's verdict, and each name pattern accepts
//! `"a{c}b"` for exactly the Unicode scalar values `c` that Rust accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use vibemon_schemas::fields::{forbidden_char, COMMIT_AUTHOR_MAX_LEN, COMMIT_SUBJECT_MAX_LEN};
use vibemon_schemas::{
    BranchName, CommitAuthor, CommitSha, CommitSubject, DeploymentReported, ExternalId, MAX_COMMITS,
};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const EVENT_SCHEMA: &str = "deployment-reported.v1.schema.json";
const EVENT_SCHEMA_V2: &str = "deployment-reported.v2.schema.json";
const EVENT_SCHEMA_V3: &str = "deployment-reported.v3.schema.json";
const OPENAPI: &str = "openapi.json";

/// Every document that holds a pattern, and the job's name for it.
const DOCUMENTS: [(&str, &str); 4] = [
    (EVENT_SCHEMA, "event"),
    (EVENT_SCHEMA_V2, "event.v2"),
    (EVENT_SCHEMA_V3, "event.v3"),
    (OPENAPI, "openapi"),
];

/// The job's name for the event schema of `version`.
fn event_document(version: u64) -> &'static str {
    match version {
        2 => "event.v2",
        3 => "event.v3",
        _ => "event",
    }
}

fn read_doc(file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(crate_dir().join(file)).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------
// The rules, as sets of Unicode scalar values.

/// Inclusive ranges of code points, ascending and not touching.
type Ranges = Vec<(u32, u32)>;

/// The maximal ranges of scalar values for which `refused` holds.
fn ranges_where(refused: impl Fn(char) -> bool) -> Ranges {
    let mut out: Ranges = Vec::new();
    for c in (0..=char::MAX as u32).filter_map(char::from_u32) {
        if !refused(c) {
            continue;
        }
        let cp = c as u32;
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == cp => *hi = cp,
            _ => out.push((cp, cp)),
        }
    }
    out
}

/// Every scalar value not in `refused`; surrogates are not scalar values, so
/// a gap at U+D800..=U+DFFF is not a range boundary.
fn complement(refused: &Ranges) -> Ranges {
    let mut allowed = Vec::new();
    let mut next = 0u32;
    for &(lo, hi) in refused {
        if lo > next {
            allowed.push((next, lo - 1));
        }
        next = hi + 1;
    }
    if next <= char::MAX as u32 {
        allowed.push((next, char::MAX as u32));
    }
    allowed
}

/// Characters an `external_id` or a display name may not hold.
fn invisible() -> Ranges {
    ranges_where(|c| forbidden_char(c).is_some())
}

/// Characters a branch may not hold: the invisible ones and whitespace.
fn invisible_or_space() -> Ranges {
    ranges_where(|c| forbidden_char(c).is_some() || c.is_whitespace())
}

/// `^[^...]+$` (or `*` when the empty string is allowed): a string of none of
/// the `refused` characters, written as literal characters.
fn none_of(refused: &Ranges, quantifier: char) -> String {
    let mut class = String::new();
    for &(lo, hi) in refused {
        for cp in [lo, hi] {
            let c = char::from_u32(cp).unwrap();
            assert!(
                !matches!(c, ']' | '\\' | '^' | '-'),
                "{c:?} would need an escape inside a character class"
            );
        }
        class.push(char::from_u32(lo).unwrap());
        if hi > lo + 1 {
            class.push('-');
        }
        if hi > lo {
            class.push(char::from_u32(hi).unwrap());
        }
    }
    format!("^[^{class}]{quantifier}$")
}

/// A string as a JSON string literal with every character outside printable
/// ASCII as `\uXXXX` (surrogate pairs for astral ones): how the files spell
/// patterns, so no invisible character is ever pasted into them.
fn json_ascii(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// Where a pattern lives, what it must be, and (for the name patterns) the
/// characters Rust accepts in it, for the sweep.
struct PatternSpec {
    file: &'static str,
    pointer: String,
    pattern: String,
    allowed: Option<Ranges>,
}

/// Python's `re.search` lets `$` match before a final "\n", so every field
/// with an anchored pattern also refers to this schema, which refuses any
/// string holding a line feed; no field accepts one.
const SINGLE_LINE_EVENT: &str = "#/$defs/SingleLine";
const SINGLE_LINE_OPENAPI: &str = "#/components/schemas/SingleLine";

const ENVIRONMENT: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";
// Segments of [A-Za-z0-9._-] that are not "." or "..", as RepoFullName wants.
const REPOSITORY: &str = "^([A-Za-z0-9_-][A-Za-z0-9._-]*|[.][A-Za-z0-9_-][A-Za-z0-9._-]*|[.][.][A-Za-z0-9._-]+)(/([A-Za-z0-9_-][A-Za-z0-9._-]*|[.][A-Za-z0-9_-][A-Za-z0-9._-]*|[.][.][A-Za-z0-9._-]+))+$";
const YEAR_1970_TO_9999: &str = "^(19[7-9][0-9]|[2-9][0-9][0-9][0-9])-";

/// A pattern generated from the characters Rust refuses, swept.
fn generated(file: &'static str, pointer: &str, refused: &Ranges, q: char) -> PatternSpec {
    PatternSpec {
        file,
        pointer: pointer.to_owned(),
        pattern: none_of(refused, q),
        allowed: Some(complement(refused)),
    }
}

/// A pattern written out, not swept.
fn literal(file: &'static str, pointer: &str, pattern: &str) -> PatternSpec {
    PatternSpec {
        file,
        pointer: pointer.to_owned(),
        pattern: pattern.to_owned(),
        allowed: None,
    }
}

/// Every `pattern` in the documents, and nothing else.
fn pattern_specs() -> Vec<PatternSpec> {
    // Version 2 keeps every pattern of version 1 where it was.
    // Version 3 keeps every pattern of version 2 where it was.
    let mut specs = event_pattern_specs(EVENT_SCHEMA);
    specs.extend(event_pattern_specs(EVENT_SCHEMA_V2));
    specs.extend(v2_pattern_specs(EVENT_SCHEMA_V2));
    specs.extend(event_pattern_specs(EVENT_SCHEMA_V3));
    specs.extend(v2_pattern_specs(EVENT_SCHEMA_V3));
    specs.extend(openapi_pattern_specs());
    specs
}

/// The patterns of version 1, in the file of any version.
fn event_pattern_specs(ev: &'static str) -> Vec<PatternSpec> {
    let (inv, inv_space) = (invisible(), invisible_or_space());
    vec![
        literal(ev, "/properties/environment/pattern", ENVIRONMENT),
        literal(ev, "/properties/repository/pattern", REPOSITORY),
        generated(ev, "/properties/branch/pattern", &inv_space, '+'),
        literal(ev, "/properties/commit_sha/pattern", "^[0-9a-f]{40}$"),
        literal(ev, "/properties/deployed_at/pattern", YEAR_1970_TO_9999),
        generated(ev, "/properties/external_id/pattern", &inv, '+'),
        literal(ev, "/properties/received_at/pattern", YEAR_1970_TO_9999),
        generated(ev, "/properties/api_key_name/pattern", &inv, '+'),
        literal(ev, "/$defs/SingleLine/not/pattern", "\n"),
        literal(ev, "/$defs/NulFreeString/not/pattern", "\0"),
    ]
}

/// The patterns version 2 adds, in the file of version 2 or later.
fn v2_pattern_specs(v2: &'static str) -> Vec<PatternSpec> {
    let inv = invisible();
    let c = |field: &str| format!("/$defs/Commit/properties/{field}/pattern");
    vec![
        literal(
            v2,
            "/properties/previous_commit_sha/pattern",
            "^[0-9a-f]{40}$",
        ),
        literal(v2, &c("sha"), "^[0-9a-f]{40}$"),
        literal(v2, &c("committed_at"), YEAR_1970_TO_9999),
        literal(v2, &c("authored_at"), YEAR_1970_TO_9999),
        generated(v2, &c("author"), &inv, '+'),
        generated(v2, &c("subject"), &inv, '+'),
    ]
}

/// The patterns of the webhook body in the OpenAPI document.
fn openapi_pattern_specs() -> Vec<PatternSpec> {
    let (inv, inv_space) = (invisible(), invisible_or_space());
    let webhook =
        |field: &str| format!("/components/schemas/WebhookRequest/properties/{field}/pattern");
    let commit =
        |field: &str| format!("/components/schemas/WebhookCommit/properties/{field}/pattern");
    vec![
        literal(OPENAPI, &webhook("environment"), ENVIRONMENT),
        literal(OPENAPI, &webhook("repository"), REPOSITORY),
        // An empty optional string means "not given" in the webhook.
        generated(OPENAPI, &webhook("branch"), &inv_space, '*'),
        literal(OPENAPI, &webhook("commit_sha"), "^([0-9a-fA-F]{40})?$"),
        generated(OPENAPI, &webhook("external_id"), &inv, '*'),
        literal(
            OPENAPI,
            &webhook("previous_commit_sha"),
            "^([0-9a-fA-F]{40})?$",
        ),
        literal(OPENAPI, &commit("sha"), "^[0-9a-fA-F]{40}$"),
        generated(OPENAPI, &commit("author"), &inv, '*'),
        generated(OPENAPI, &commit("subject"), &inv, '*'),
        literal(OPENAPI, "/components/schemas/SingleLine/not/pattern", "\n"),
        // What the read API answers and takes.
        literal(
            OPENAPI,
            "/components/schemas/DeploymentDetail/allOf/1/properties/commits/items/properties/sha/pattern",
            "^[0-9a-f]{40}$",
        ),
        literal(
            OPENAPI,
            "/components/schemas/DeploymentDetail/allOf/1/properties/lineage/oneOf/1/properties/predecessor_commit_sha/pattern",
            "^[0-9a-f]{40}$",
        ),
        literal(
            OPENAPI,
            "/paths/~1api~1v1~1metrics~1dora/get/parameters/0/schema/pattern",
            ENVIRONMENT,
        ),
        // The timestamps the webhook and the read API take: 1970 to 9999.
        literal(OPENAPI, &webhook("deployed_at").replace("/pattern", "/anyOf/1/pattern"), YEAR_1970_TO_9999),
        literal(OPENAPI, &commit("committed_at"), YEAR_1970_TO_9999),
        literal(OPENAPI, &commit("authored_at").replace("/pattern", "/anyOf/1/pattern"), YEAR_1970_TO_9999),
        literal(OPENAPI, &param(HISTORY, 3), YEAR_1970_TO_9999),
        literal(OPENAPI, &param(HISTORY, 4), YEAR_1970_TO_9999),
        literal(OPENAPI, &param(DEPLOYED, 1), YEAR_1970_TO_9999),
        literal(OPENAPI, &param(DORA, 2), YEAR_1970_TO_9999),
        literal(OPENAPI, &param(DORA, 3), YEAR_1970_TO_9999),
        // extra_data: no NUL in any key or string (Postgres jsonb).
        literal(OPENAPI, "/components/schemas/NoNul/not/pattern", "\0"),
        // The webhook's headers, as ingest/src/webhook.rs checks their bytes:
        // Idempotency-Key visible ASCII, X-Request-Id printable ASCII.
        ascii(&param(WEBHOOK, 0), "^[!-~]+$", (0x21, 0x7E)),
        ascii(&param(WEBHOOK, 1), "^[ -~]*$", (0x20, 0x7E)),
        // The read API's query and path values: no Cc, Cf or Co character
        // (read_api.rs `visible`, the same forbidden_char).
        literal(OPENAPI, &param(HISTORY, 0), ENVIRONMENT),
        generated(OPENAPI, &param(HISTORY, 1), &inv, '*'),
        literal(OPENAPI, &param(HISTORY, 5), "^[A-Za-z0-9_-]+$"),
        generated(OPENAPI, &param(DEPLOYED, 0), &inv, '+'),
        generated(OPENAPI, &param(DEPLOYED, 2), &inv, '*'),
        // DORA refuses an empty repository.
        generated(OPENAPI, &param(DORA, 1), &inv, '+'),
    ]
}

const WEBHOOK: &str = "/paths/~1api~1v1~1deployments~1webhook/post";
const HISTORY: &str = "/paths/~1api~1v1~1deployments/get";
const DEPLOYED: &str = "/paths/~1api~1v1~1environments~1{name}~1deployed/get";
const DORA: &str = "/paths/~1api~1v1~1metrics~1dora/get";

/// The pattern of parameter `i` of the operation at `operation`.
fn param(operation: &str, i: usize) -> String {
    format!("{operation}/parameters/{i}/schema/pattern")
}

/// A header pattern of one ASCII range, swept like the generated ones.
fn ascii(pointer: &str, pattern: &str, allowed: (u32, u32)) -> PatternSpec {
    PatternSpec {
        allowed: Some(vec![allowed]),
        ..literal(OPENAPI, pointer, pattern)
    }
}

/// Every `pattern` keyword's JSON pointer and value in `doc`.
fn patterns_in(doc: &Value, pointer: &str, out: &mut Vec<(String, String)>) {
    let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match doc {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{pointer}/{}", escape(k));
                match v {
                    Value::String(p) if k == "pattern" => out.push((here, p.clone())),
                    _ => patterns_in(v, &here, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                patterns_in(v, &format!("{pointer}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_pattern_in_the_published_schemas_is_the_one_generated_from_the_rust_rules() {
    let specs = pattern_specs();
    let mut problems = Vec::new();
    for (file, _) in DOCUMENTS {
        let mut found = Vec::new();
        patterns_in(&read_doc(file), "", &mut found);
        for (pointer, actual) in &found {
            match specs.iter().find(|s| s.file == file && &s.pointer == pointer) {
                None => problems.push(format!(
                    "{file} {pointer}: a pattern this test does not know; add it to pattern_specs()"
                )),
                Some(s) if s.pattern != *actual => problems.push(format!(
                    "{file} {pointer}: the pattern differs from the Rust rule; it should be\n    \"pattern\": {}",
                    json_ascii(&s.pattern)
                )),
                Some(_) => {}
            }
        }
        for s in specs.iter().filter(|s| s.file == file) {
            if !found.iter().any(|(p, _)| *p == s.pointer) {
                problems.push(format!(
                    "{file} {}: missing; it should be\n    \"pattern\": {}",
                    s.pointer,
                    json_ascii(&s.pattern)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_pattern_is_written_in_the_regex_subset_all_validators_share() {
    for spec in pattern_specs() {
        // No escapes at all: `\p{..}`, `\x{..}`, `\s`, `\d` and `\w` differ or
        // do not exist between Python's re, ECMA-262 and Go's regexp.
        assert!(
            !spec.pattern.contains('\\') && !spec.pattern.contains("(?"),
            "{} {}: {} uses an escape or an extension group",
            spec.file,
            spec.pointer,
            json_ascii(&spec.pattern)
        );
    }
    for (file, _) in DOCUMENTS {
        let text = std::fs::read_to_string(crate_dir().join(file)).unwrap();
        assert!(
            text.is_ascii(),
            "{file} must spell every non-ASCII character as \\uXXXX, so none hides in an editor"
        );
    }
}

#[test]
fn every_anchored_pattern_comes_with_the_single_line_rule() {
    for spec in pattern_specs().iter().filter(|s| s.pattern.ends_with('$')) {
        let field = spec.pointer.strip_suffix("/pattern").unwrap();
        let doc = read_doc(spec.file);
        let single_line = match spec.file {
            OPENAPI => SINGLE_LINE_OPENAPI,
            _ => SINGLE_LINE_EVENT,
        };
        assert_eq!(
            doc.pointer(field).and_then(|f| f.get("$ref")),
            Some(&Value::from(single_line)),
            "{} {field}: Python's re matches `$` before a final newline, so the field needs \"$ref\": \"{single_line}\"",
            spec.file
        );
    }
}

// ---------------------------------------------------------------------------
// Validators from other languages.

/// One instance, the document and schema to check it against, and the
/// verdict every validator must give.
fn vector(name: &str, schema: &str, instance: Value, valid: bool) -> Value {
    // Names are shown in a terminal, where a raw U+202E would reorder the line.
    let name: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' => c.to_string(),
            _ => format!("\\u{{{:04X}}}", c as u32),
        })
        .collect();
    json!({ "name": name, "schema": schema, "instance": instance, "valid": valid })
}

fn fixtures() -> Vec<(String, Value)> {
    let dir = crate_dir().join("fixtures");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (
                name,
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 3, "expected the golden fixtures in {dir:?}");
    out
}

/// `depth` objects nested inside each other around a number.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!({ "k": inner }))
}

/// Events with one field changed; the schema's verdict must be the decoder's.
fn event_corpus() -> Vec<(String, Value)> {
    let long = |n: usize, c: &str| Value::from(c.repeat(n));
    let mut edits: Vec<(&str, Value)> = Vec::new();
    for field in ["branch", "external_id", "api_key_name"] {
        for bad in [
            "\u{0}", "\u{202E}", "\u{200B}", "\u{E000}", "\u{7F}", "\u{FEFF}",
        ] {
            edits.push((field, Value::from(format!("ci{bad}x"))));
        }
        edits.push((field, Value::from("\u{F0000}")));
        edits.push((field, Value::from("\u{E0001}tag")));
        edits.push((field, Value::from("ok\n")));
        edits.push((field, Value::from("")));
        edits.push((field, Value::from("caf\u{E9}-\u{1F680}")));
        edits.push((field, Value::from("\u{1F680}".repeat(200))));
        edits.push((field, Value::from(1)));
    }
    edits.extend([
        ("branch", Value::Null),
        ("branch", Value::from("feature x")),
        ("branch", Value::from("a\u{3000}b")),
        ("branch", Value::from("a\u{85}b")),
        ("branch", Value::from("a\u{A0}b")),
        ("branch", long(255, "b")),
        ("branch", long(256, "b")),
        ("external_id", Value::Null),
        ("external_id", Value::from("run 42")),
        ("external_id", long(255, "e")),
        ("external_id", long(256, "e")),
        ("api_key_name", Value::Null),
        ("api_key_name", Value::from("GitHub Actions")),
        ("api_key_name", long(200, "n")),
        ("api_key_name", long(201, "n")),
        ("environment", Value::from("prod-eu-1.blue_green")),
        ("environment", Value::from("\u{440}roduction")),
        ("environment", Value::from("-prod")),
        ("environment", Value::from("production\n")),
        ("environment", long(64, "p")),
        ("environment", long(65, "p")),
        ("repository", Value::from("repo")),
        ("repository", Value::from("owner/")),
        ("repository", Value::from("owner/../x")),
        ("repository", Value::from("owner/./x")),
        ("repository", Value::from("./x")),
        ("repository", Value::from("owner/.hidden/..x/x..")),
        ("repository", Value::from("owner/...")),
        ("repository", Value::from("own er/repo")),
        ("repository", Value::from("owner/repo\n")),
        ("repository", Value::from(format!("o/{}", "r".repeat(253)))),
        ("repository", Value::from(format!("o/{}", "r".repeat(254)))),
        ("commit_sha", Value::Null),
        ("commit_sha", Value::from("abc123")),
        (
            "commit_sha",
            Value::from("ABCDEF0123456789ABCDEF0123456789ABCDEF01"),
        ),
        ("commit_sha", long(41, "a")),
        ("commit_sha", Value::from(format!("{}\n", "a".repeat(40)))),
        ("status", Value::from("done")),
        ("status", Value::from("")),
        ("source", Value::from("gitlab")),
        ("schema_version", json!(2)),
        ("schema_version", json!("1")),
        ("event_id", Value::from("not-a-uuid")),
        ("deployed_at", Value::from("yesterday")),
        ("deployed_at", Value::from("0001-01-01T00:00:00Z")),
        ("deployed_at", Value::from("1969-12-31T23:59:59Z")),
        ("deployed_at", Value::from("1970-01-01T00:00:00Z")),
        ("deployed_at", Value::from("1970-01-01T00:30:00+01:00")),
        ("deployed_at", Value::from("9999-12-31T23:59:59.999999Z")),
        ("deployed_at", Value::from("9999-12-31T23:59:59-01:00")),
        ("deployed_at", Value::from("9999-12-31T23:59:59.9999999Z")),
        ("deployed_at", Value::from("+10000-01-01T00:00:00Z")),
        ("received_at", Value::from("1900-01-01T00:00:00Z")),
        ("received_at", Value::from("2024-01-15T10:30:00+02:00")),
        ("extra_data", json!([1])),
        ("extra_data", json!({"k": "a\u{0}b"})),
        ("extra_data", json!({"a\u{0}": 1})),
        ("extra_data", json!({"k": [{"deep": ["x\u{0}"]}]})),
        ("extra_data", json!({"k": {"\u{0}": true}})),
        ("extra_data", json!({"k": "\u{202E}is fine here"})),
    ]);
    let base = fixtures()
        .into_iter()
        .find(|(n, _)| n.contains("github-actions"))
        .expect("the github-actions fixture")
        .1;
    // A long run of one character reads better as "c" x n.
    let show = |v: &Value| match v.as_str().map(|s| (s.chars().next(), s.chars().count())) {
        Some((Some(c), n)) if n > 40 && v.as_str().unwrap().chars().all(|d| d == c) => {
            format!("{c:?} x {n}")
        }
        _ => v.to_string(),
    };
    let mut out = Vec::new();
    for (field, value) in edits {
        let mut event = base.clone();
        event[field] = value.clone();
        out.push((format!("{field} = {}", show(&value)), event));
    }
    for depth in [16, 17] {
        let mut deep = base.clone();
        deep["extra_data"] = nested(depth);
        out.push((format!("extra_data {depth} levels deep"), deep));
    }
    let mut extra = base.clone();
    extra["unknown"] = json!(true);
    out.push(("an extra property".to_owned(), extra));
    let mut missing = base.clone();
    missing.as_object_mut().unwrap().remove("received_at");
    out.push(("received_at missing".to_owned(), missing));
    out
}

/// Version-2 events with one of its new fields changed, and version-1
/// events carrying one; the verdict of the schema the event's version names
/// must be the decoder's.
fn event_corpus_v2() -> Vec<(String, Value)> {
    let fixture = |part: &str| {
        fixtures()
            .into_iter()
            .find(|(n, _)| n.contains(part))
            .unwrap_or_else(|| panic!("the {part} fixture"))
            .1
    };
    let (base, v1) = (fixture("v2.commits"), fixture("v1.github-actions"));
    let sha = |i: usize| Value::from(format!("{i:040x}"));
    let commit = |i: usize| json!({"sha": sha(i), "committed_at": "2024-01-16T09:00:00Z"});
    let commits = |n: usize| Value::from((0..n).map(commit).collect::<Vec<_>>());
    let mut out = Vec::new();
    let mut edit = |name: String, base: &Value, field: &str, value: Value| {
        let mut event = base.clone();
        event[field] = value;
        out.push((name, event));
    };
    edit(
        "v1 with commits".into(),
        &v1,
        "commits",
        base["commits"].clone(),
    );
    edit(
        "v1 with previous_commit_sha".into(),
        &v1,
        "previous_commit_sha",
        sha(7),
    );
    for (name, field, value) in [
        (
            "previous_commit_sha null",
            "previous_commit_sha",
            Value::Null,
        ),
        (
            "previous_commit_sha short",
            "previous_commit_sha",
            Value::from("abc"),
        ),
        ("commits empty", "commits", json!([])),
        ("commits null", "commits", Value::Null),
        ("commits an object", "commits", commit(1)),
        ("commits of strings", "commits", json!(["not a commit"])),
        ("commits at the cap", "commits", commits(MAX_COMMITS)),
        ("commits over the cap", "commits", commits(MAX_COMMITS + 1)),
        (
            "commits repeat a sha",
            "commits",
            json!([commit(1), commit(1)]),
        ),
    ] {
        edit(format!("v2 {name}"), &base, field, value);
    }
    out.extend(commit_edits(&base));
    out
}

/// The v2 fixture with one field of its first commit changed.
fn commit_edits(base: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (field, value) in [
        ("sha", Value::from("abc")),
        (
            "sha",
            Value::from("ABCDEF0123456789ABCDEF0123456789ABCDEF01"),
        ),
        ("sha", Value::Null),
        ("committed_at", Value::from("yesterday")),
        ("committed_at", Value::from("1969-12-31T23:59:59Z")),
        ("committed_at", Value::Null),
        ("authored_at", Value::from("2024-01-16T13:00:00+01:00")),
        ("authored_at", Value::from("+10000-01-01T00:00:00Z")),
        ("authored_at", Value::Null),
        (
            "committed_at",
            Value::from(format!("2024-01-15T09:00:00.{}Z", "0".repeat(44))),
        ),
        ("author", Value::Null),
        ("subject", Value::Null),
        ("author", Value::from("x".repeat(64))),
        ("author", Value::from("x".repeat(65))),
        ("author", Value::from("Mona\u{202E}Lisa")),
        ("author", Value::from("")),
        ("subject", Value::from("\u{1F680}".repeat(100))),
        ("subject", Value::from("s".repeat(101))),
        ("subject", Value::from("fix\nmore")),
        ("subject", Value::from("tab\there")),
        ("message", Value::from("an extra property")),
    ] {
        let mut event = base.clone();
        event["commits"][0][field] = value.clone();
        let shown = match value.as_str() {
            Some(s) if s.chars().count() > 40 => {
                format!("{:?} x {}", s.chars().next().unwrap(), s.chars().count())
            }
            _ => value.to_string(),
        };
        out.push((format!("v2 commits[0].{field} = {shown}"), event));
    }
    out
}

/// Vectors the decoder refuses but the schema cannot: JSON Schema has no
/// depth limit, and compares no instants, so an offset that moves a time
/// across a bound, or a fraction past microseconds, passes the year pattern;
/// and it cannot compare one property across the items of an array, so a
/// commit listed twice passes.
const SCHEMA_IS_LOOSER: &[&str] = &[
    "extra_data 17 levels deep",
    "deployed_at = \"1970-01-01T00:30:00+01:00\"",
    "deployed_at = \"9999-12-31T23:59:59-01:00\"",
    "deployed_at = \"9999-12-31T23:59:59.9999999Z\"",
    "v2 commits repeat a sha",
];

/// Vectors the decoder accepts but the schema refuses, on purpose: the
/// schema describes what ingest writes, and the decoder is lenient where
/// that costs nothing. It lower-cases an upper-case SHA (ingest always writes
/// lower case) and ignores a property it does not know (serde's default), so
/// an event from a newer producer still decodes; the same holds inside a
/// commit.
const SCHEMA_IS_STRICTER: &[&str] = &[
    "commit_sha = \"ABCDEF0123456789ABCDEF0123456789ABCDEF01\"",
    "an extra property",
    "v2 commits[0].sha = \"ABCDEF0123456789ABCDEF0123456789ABCDEF01\"",
    "v2 commits[0].message = \"an extra property\"",
];

/// A name with a Cf or Co character: ingest refuses it today, so the schema
/// (what ingest writes) does too, but earlier builds published such names
/// and the decoder keeps reading them (see `validated_string!`'s `decode`).
fn an_invisible_character_in_a_name(vector: &str) -> bool {
    ["branch = ", "external_id = ", "api_key_name = "]
        .iter()
        .any(|f| vector.starts_with(f))
        && vector
            .chars()
            .any(|c| !c.is_control() && forbidden_char(c).is_some())
}

/// Webhook bodies with one field set; the verdict follows ingest's rule that
/// an empty optional string means "not given", then the field's own type.
fn webhook_corpus() -> Vec<Value> {
    let mut out = Vec::new();
    let base = json!({ "environment": "production", "repository": "acme/api" });
    let not_given = |s: &str| s.is_empty();
    let cases: Vec<(&str, &str, bool)> = [
        "",
        "main",
        "feature x",
        "ok\n",
        "a\u{202E}b",
        "caf\u{E9}",
        "a\u{E000}",
    ]
    .iter()
    .flat_map(|s| {
        [
            ("branch", *s, not_given(s) || BranchName::parse(*s).is_ok()),
            (
                "external_id",
                *s,
                not_given(s) || ExternalId::parse(*s).is_ok(),
            ),
        ]
    })
    .chain(
        ["", "abc", "ABCDEF0123456789ABCDEF0123456789ABCDEF01"]
            .iter()
            .map(|s| {
                (
                    "commit_sha",
                    *s,
                    not_given(s) || CommitSha::parse(*s).is_ok(),
                )
            }),
    )
    .collect();
    for (field, value, valid) in cases {
        let mut body = base.clone();
        body[field] = Value::from(value);
        out.push(vector(
            &format!("webhook {field} = {value:?}"),
            "webhook",
            body,
            valid,
        ));
    }
    out
}

/// Webhook bodies with `previous_commit_sha` or `commits` set; the verdict
/// follows the same types ingest parses them with.
fn webhook_commit_corpus() -> Vec<Value> {
    let base = json!({ "environment": "production", "repository": "acme/api" });
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    let mut out = Vec::new();
    for sha in ["", "abc", "ABCDEF0123456789ABCDEF0123456789ABCDEF01"] {
        let valid = sha.is_empty() || CommitSha::parse(sha).is_ok();
        let body = with("previous_commit_sha", Value::from(sha));
        let name = format!("webhook previous_commit_sha = {sha:?}");
        out.push(vector(&name, "webhook", body, valid));
    }
    for (n, valid) in [(0, true), (MAX_COMMITS, true), (MAX_COMMITS + 1, false)] {
        let body = with(
            "commits",
            Value::from((0..n).map(webhook_commit).collect::<Vec<_>>()),
        );
        out.push(vector(
            &format!("webhook {n} commits"),
            "webhook",
            body,
            valid,
        ));
    }
    for (field, value, valid) in webhook_commit_fields() {
        let mut c = webhook_commit(1);
        c[field] = Value::from(value.as_str());
        let body = with("commits", json!([c]));
        let name = format!("webhook commits[0].{field} = {value:?}");
        out.push(vector(&name, "webhook", body, valid));
    }
    out
}

/// A valid commit of a webhook body, its SHA in upper case (ingest lowers it).
fn webhook_commit(i: usize) -> Value {
    json!({"sha": format!("{i:040X}"), "committed_at": "2024-01-15T10:00:00Z"})
}

/// One field of a webhook commit set, and whether ingest's types accept it
/// (an empty optional string means "not given").
fn webhook_commit_fields() -> Vec<(&'static str, String, bool)> {
    let author = |s: String| {
        let ok = CommitAuthor::parse(s.as_str()).is_ok();
        ("author", s, ok)
    };
    let subject = |s: String| {
        let ok = CommitSubject::parse(s.as_str()).is_ok();
        ("subject", s, ok)
    };
    vec![
        author("\u{1F680}".repeat(COMMIT_AUTHOR_MAX_LEN)),
        author("a\u{202E}b".to_owned()),
        ("author", String::new(), true),
        subject("s".repeat(COMMIT_SUBJECT_MAX_LEN + 1)),
        subject("line\nbreak".to_owned()),
        ("sha", "abc".to_owned(), CommitSha::parse("abc").is_ok()),
        ("message", "not a field".to_owned(), false),
    ]
}

/// Everything the other-language checkers read: the documents, the vectors
/// and, for each name pattern, the code points Rust accepts.
fn job() -> Value {
    let mut vectors: Vec<Value> = fixtures()
        .into_iter()
        .map(|(name, f)| {
            let document = event_document(f["schema_version"].as_u64().unwrap());
            vector(&format!("fixture {name}"), document, f, true)
        })
        .collect();
    let mut corpus = event_corpus();
    corpus.extend(event_corpus_v2());
    for known in SCHEMA_IS_LOOSER.iter().chain(SCHEMA_IS_STRICTER) {
        assert!(
            corpus.iter().any(|(n, _)| n == known),
            "{known:?} is listed as a known difference but is not in the corpus"
        );
    }
    for (name, event) in corpus {
        let rust_accepts = DeploymentReported::decode(&serde_json::to_vec(&event).unwrap()).is_ok();
        let looser = SCHEMA_IS_LOOSER.contains(&name.as_str());
        let stricter =
            SCHEMA_IS_STRICTER.contains(&name.as_str()) || an_invisible_character_in_a_name(&name);
        assert!(
            !looser || !rust_accepts,
            "{name}: listed as schema-is-looser, but the decoder accepts it"
        );
        assert!(
            !stricter || rust_accepts,
            "{name}: listed as schema-is-stricter, but the decoder refuses it"
        );
        // Each event is checked against the schema its version names, as a
        // consumer picks it by `ce_dataschema`.
        let document = event_document(event["schema_version"].as_u64().unwrap_or(1));
        vectors.push(vector(
            &name,
            document,
            event,
            (rust_accepts || looser) && !stricter,
        ));
    }
    vectors.extend(webhook_corpus());
    vectors.extend(webhook_commit_corpus());
    let sweeps: Vec<Value> = pattern_specs()
        .into_iter()
        .filter_map(|s| {
            let allowed = s.allowed?;
            let document = DOCUMENTS.iter().find(|(f, _)| *f == s.file)?.1;
            Some(json!({ "file": s.file, "document": document, "pointer": s.pointer, "allowed": allowed }))
        })
        .collect();
    json!({
        "documents": DOCUMENTS
            .iter()
            .map(|(file, name)| (name.to_string(), json!(crate_dir().join(file))))
            .collect::<serde_json::Map<String, Value>>(),
        "vectors": vectors,
        "sweeps": sweeps,
    })
}

/// A directory of its own under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("vibemon-interop-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn python_jsonschema_and_node_ajv_agree_with_the_rust_rules() {
    let tmp = TempDir::new();
    let job_file = tmp.path().join("job.json");
    std::fs::write(&job_file, serde_json::to_vec(&job()).unwrap()).unwrap();

    let out = Command::new("bash")
        .arg(crate_dir().join("interop/run"))
        .arg(&job_file)
        .output()
        .expect("bash runs schemas/interop/run");

    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemas/interop/run failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // Both checkers must have run and said so; a checker that silently did
    // nothing must not pass.
    for checker in ["python jsonschema", "node ajv"] {
        assert!(
            stdout.contains(&format!("{checker}: ok")),
            "{checker} did not report; output:\n{stdout}\n{stderr}"
        );
    }
}

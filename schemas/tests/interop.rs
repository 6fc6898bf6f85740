//! Holds the published JSON Schema and OpenAPI document to the Rust rules.
//!
//! The character classes in the `pattern`s are generated here from
//! `fields::forbidden_char` and `char::is_whitespace`, so the files cannot
//! drift from the rule; every pattern stays in the regex subset that all
//! JSON Schema validators share (literal characters, `[...]`, `^`, `$`,
//! groups, alternation, quantifiers: no `\p{..}`, no escapes at all).

use std::path::PathBuf;

use serde_json::Value;
use vibemon_schemas::fields::forbidden_char;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const EVENT_SCHEMA: &str = "deployment-reported.v1.schema.json";
const OPENAPI: &str = "openapi.json";

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

/// Where a pattern lives and what it must be.
struct PatternSpec {
    file: &'static str,
    pointer: String,
    pattern: String,
}

/// Python's `re.search` lets `$` match before a final "\n", so every field
/// with an anchored pattern also refers to this schema, which refuses any
/// string holding a line feed; no field accepts one.
const SINGLE_LINE_EVENT: &str = "#/$defs/SingleLine";
const SINGLE_LINE_OPENAPI: &str = "#/components/schemas/SingleLine";

/// Every `pattern` in the two documents, and nothing else.
fn pattern_specs() -> Vec<PatternSpec> {
    let (inv, inv_space) = (invisible(), invisible_or_space());
    let generated = |file, pointer: &str, refused: &Ranges, q| PatternSpec {
        file,
        pointer: pointer.to_owned(),
        pattern: none_of(refused, q),
    };
    let literal = |file, pointer: &str, pattern: &str| PatternSpec {
        file,
        pointer: pointer.to_owned(),
        pattern: pattern.to_owned(),
    };
    const ENVIRONMENT: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";
    // Segments of [A-Za-z0-9._-] that are not "." or "..", as RepoFullName wants.
    const REPOSITORY: &str = "^([A-Za-z0-9_-][A-Za-z0-9._-]*|[.][A-Za-z0-9_-][A-Za-z0-9._-]*|[.][.][A-Za-z0-9._-]+)(/([A-Za-z0-9_-][A-Za-z0-9._-]*|[.][A-Za-z0-9_-][A-Za-z0-9._-]*|[.][.][A-Za-z0-9._-]+))+$";
    const YEAR_1970_TO_9999: &str = "^(19[7-9][0-9]|[2-9][0-9][0-9][0-9])-";
    let ev = EVENT_SCHEMA;
    let wh = "/components/schemas/WebhookRequest/properties";
    let webhook = |field: &str| format!("{wh}/{field}/pattern");
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
        literal(OPENAPI, &webhook("environment"), ENVIRONMENT),
        literal(OPENAPI, &webhook("repository"), REPOSITORY),
        // An empty optional string means "not given" in the webhook.
        generated(OPENAPI, &webhook("branch"), &inv_space, '*'),
        literal(OPENAPI, &webhook("commit_sha"), "^([0-9a-fA-F]{40})?$"),
        generated(OPENAPI, &webhook("external_id"), &inv, '*'),
        literal(OPENAPI, "/components/schemas/SingleLine/not/pattern", "\n"),
    ]
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
    for file in [EVENT_SCHEMA, OPENAPI] {
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
    for file in [EVENT_SCHEMA, OPENAPI] {
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
            EVENT_SCHEMA => SINGLE_LINE_EVENT,
            _ => SINGLE_LINE_OPENAPI,
        };
        assert_eq!(
            doc.pointer(field).and_then(|f| f.get("$ref")),
            Some(&Value::from(single_line)),
            "{} {field}: Python's re matches `$` before a final newline, so the field needs \"$ref\": \"{single_line}\"",
            spec.file
        );
    }
}

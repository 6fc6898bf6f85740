//! Replays the fuzzers' corpora (`fuzz/corpus/`) on stable Rust, so every
//! input the fuzzers kept, and every crash they ever found (added to the
//! corpus as a regression), is checked by every CI run. The hand-written
//! seeds for `commits` and `previous_commit_sha` come from
//! `fuzz/seeds/what_changed.py`.

use std::collections::HashSet;
use std::path::PathBuf;

use vibemon_schemas::{DeploymentReported, MAX_COMMITS};

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no corpus in {dir:?}");
    out
}

#[test]
fn every_webhook_body_in_the_fuzz_corpus_validates_without_panicking() {
    let now = chrono::DateTime::from_timestamp(1_705_314_600, 0).unwrap();
    for (name, data) in inputs("webhook_body") {
        match vibemon_ingest::request::parse(&data, now, chrono::Duration::minutes(5), 2) {
            Ok(r) => {
                assert!(
                    vibemon_schemas::EnvironmentName::parse(r.environment.as_str()).is_ok(),
                    "{name}"
                );
                assert!(
                    vibemon_schemas::RepoFullName::parse(r.repository.as_str()).is_ok(),
                    "{name}"
                );
                let shas: HashSet<&str> = r.commits.iter().map(|c| c.sha.as_str()).collect();
                assert!(r.commits.len() <= MAX_COMMITS, "{name}");
                assert_eq!(shas.len(), r.commits.len(), "{name}: a SHA twice");
            }
            Err(issues) => assert!(!issues.is_empty(), "{name}"),
        }
    }
}

#[test]
fn every_event_in_the_fuzz_corpus_decodes_or_is_refused_and_round_trips() {
    for (name, data) in inputs("event_decode") {
        if let Ok(event) = DeploymentReported::decode(&data) {
            let again = DeploymentReported::decode(&event.encode())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(again, event, "{name}");
        }
    }
}

#[test]
fn both_fuzz_corpora_hold_seeds_with_commits_and_previous_commit_sha() {
    for target in ["webhook_body", "event_decode"] {
        let inputs = inputs(target);
        let with = |field: &str| {
            inputs
                .iter()
                .filter(|(_, d)| String::from_utf8_lossy(d).contains(field))
                .count()
        };

        let (commits, previous) = (with("\"commits\""), with("\"previous_commit_sha\""));

        assert!(commits >= 30, "{target}: {commits} inputs with commits");
        assert!(
            previous >= 10,
            "{target}: {previous} with previous_commit_sha"
        );
    }
}

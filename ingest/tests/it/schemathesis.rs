//! schemathesis, a property-based API tester, against this ingest and the
//! OpenAPI document it serves: a request the document calls valid must not
//! be refused (a 422 or 415 for it means the document fails to state a rule
//! ingest enforces), one it calls invalid must be refused, and every answer
//! must match the document's responses. So a client generated from
//! `/openapi.json` refuses what ingest would refuse.
//!
//! The run is deterministic (a fixed seed) and bounded (20 examples per
//! operation); `schemas/schemathesis/run` installs the pinned schemathesis
//! into `~/.cache/vibemon` on first use. Its hooks (schemas/schemathesis/
//! hooks.py) keep generated values within the few rules the document can
//! state only in words (the future bound of deployed_at, no sha twice, a
//! cursor this API returned, an Idempotency-Key bound to its body, the DORA
//! window), rewriting only values the document calls valid; each is
//! justified there.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::helpers::TestApp;

/// The fixed seed: the same requests on every run, so a failure reproduces.
const SEED: &str = "20261129";

/// Test cases per operation in the fuzzing phase; with the examples and the
/// coverage phase (boundary values of every constraint) this keeps the run
/// well under two minutes on two cores.
const MAX_EXAMPLES: &str = "20";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/schemathesis/run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_request_the_document_misdescribes() {
    // The tenant's key holds `ingest` and `read`: every keyed operation in
    // the document is reachable with it.
    let app = TestApp::spawn().await;
    let base = app.url("");
    let base = base.trim_end_matches('/').to_owned();
    let key = app.tenant.key.clone();

    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(script())
            .args([base.as_str(), key.as_str()])
            .args([
                // Every check: server errors, status codes, content types,
                // headers and bodies against the responses, positive data
                // accepted, negative data refused, required headers, methods,
                // authentication. Nothing here is excluded.
                "--checks",
                "all",
                // examples: the document's own examples; coverage: the
                // boundaries of every constraint (lengths, patterns, enums,
                // ranges), valid and invalid; fuzzing: generated requests.
                // The stateful phase is left out: it chains the webhook's 201
                // into the read API, which the other tests cover exactly.
                "--phases",
                "examples,coverage,fuzzing",
                "--seed",
                SEED,
                "--max-examples",
                MAX_EXAMPLES,
                "--continue-on-failure",
                // One worker: with two, Hypothesis's lambda-description
                // cache raced ("AST constructor recursion depth mismatch")
                // and the run reported a runtime error of its own.
                "--workers",
                "1",
                "--request-timeout",
                "10",
                // The native intake routes authenticate each delivery by a
                // signature over the body (GitHub's X-Hub-Signature-256, an
                // HMAC with the integration's secret) or a per-integration
                // token, for an integration that must exist: schemathesis
                // cannot sign what it generates, so every request would be a
                // 401 or 404 and test nothing of their bodies. Their
                // contracts are tested in integrations*.rs.
                "--exclude-path-regex",
                "^/api/v1/integrations/",
            ])
            .output()
            .expect("bash runs schemas/schemathesis/run")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The summary (phases, test cases, time), shown with --nocapture.
    let summary: Vec<&str> = stdout.lines().rev().take(30).collect();
    let summary: Vec<&str> = summary.into_iter().rev().collect();
    eprintln!(
        "{}\nschemathesis took {:?}",
        summary.join("\n"),
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "schemathesis found requests the document misdescribes ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

//! The local stack's scripts under `deploy/local/` that tests run, named
//! once: private brokers and clusters are started and killed through them.

use std::process::Command;

/// `deploy/local/kafka-node`: one KRaft broker in a directory of its own.
pub const KAFKA_NODE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/kafka-node");

/// `deploy/local/kafka-cluster`: three KRaft brokers on consecutive ports.
pub const KAFKA_CLUSTER: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/kafka-cluster");

/// Runs `script` with `args` and a small JVM heap; panics if it fails.
pub fn run(script: &str, args: &[&str]) {
    let status = Command::new("bash")
        .arg(script)
        .args(args)
        .env("KAFKA_HEAP", "256m")
        .status()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(status.success(), "{script} {args:?} failed");
}

/// SIGKILLs the broker whose data directory is `dir`, ignoring failure (it
/// may be down already): for `Drop`, which must not panic.
pub fn kill_node_quietly(dir: &std::path::Path) {
    let _ = Command::new("bash")
        .arg(KAFKA_NODE)
        .args(["kill", "--dir", &dir.display().to_string()])
        .status();
}

//! `vibemon` and the whole pipeline, on the real Postgres and Kafka: the CLI
//! is run as the binary users run, and the end-to-end test drives ingest and
//! projector together.

mod cli;
mod consumers;
mod deploy_files;
mod dora;
mod faults;
mod integrations;
mod key_scopes;
mod pipeline;
mod read_and_report;
mod replay_tail;
mod report_commits;
mod security;
mod stack;

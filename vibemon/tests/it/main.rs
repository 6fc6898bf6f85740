//! `vibemon` and the whole pipeline, on the real Postgres and Kafka: the CLI
//! is run as the binary users run, and the end-to-end test drives ingest and
//! projector together.

mod cli;
mod pipeline;
mod replay_tail;

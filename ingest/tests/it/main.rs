//! ingest's integration tests, on the real Postgres and Kafka of
//! `deploy/local/services up`. Each test spawns its own ingest on port 0 with
//! its own database and topic, so they run in parallel.

mod helpers;

mod fuzz_corpus;

mod hostile;

mod auth;
mod bad_bytes;
mod commits;
mod contract;
mod deadlines;
mod durability;
mod flood;
mod header_bytes;
mod idempotency;
mod in_flight;
mod integrations;
mod integrations_gitlab;
mod limits;
mod operability;
mod producer_queue;
mod read_api;
mod read_pool;
mod router;
mod schemathesis;
mod scopes;
mod secrets;
mod seed_examples;
mod traces;

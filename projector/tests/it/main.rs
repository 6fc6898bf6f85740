//! The projector's integration tests, on the real Kafka and Postgres. Each
//! test has its own topic, database and consumer group.

mod helpers;

mod crashes;
mod dead_letters;
mod fast_path;
mod hardening;
mod ledger;
mod model;
mod ordering;
mod projection;
mod tls;
mod versions;
mod what_changed_model;

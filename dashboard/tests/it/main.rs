//! The dashboard's tests: the router driven without sockets against a real
//! Postgres (`pages`, `security`), and the flows a person goes through in a
//! real Chromium against real Kafka and Postgres (`browser`).

mod browser;
mod helpers;
mod pages;
mod security;

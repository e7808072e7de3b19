//! End-to-end tests: the real `tokenmint` binary, started on ephemeral ports, called with real
//! gRPC and HTTP clients. Every test runs on SQLite, and on PostgreSQL when
//! `TOKENMINT_TEST_DATABASE_URL` is set (each test in a database of its own).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod access;
mod api_keys;
mod audit;
mod connections;
mod escalation;
mod exchange;
mod faults;
mod fixture;
mod hostile_input;
mod lifecycle;
mod matrix;
mod oauth2;
mod projects;
mod replicas;
mod rotation;
mod secrecy;
mod service_users;
mod signing_keys;
mod startup;
mod surface;
mod tenancy;
mod throttling;
mod tls;
mod token_attacks;
mod tokens;

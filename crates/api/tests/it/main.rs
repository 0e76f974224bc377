//! Integration tests of the HTTP layer: the real server on a real port, against real
//! PostgreSQL (a fresh database per test).

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly, like the tests that call them"
)]

mod accounts;
mod audit;
mod authz;
mod cache;
mod closed;
mod common;
mod credentials;
mod docs;
mod edge;
mod errors;
mod factors;
mod head;
mod health;
mod jwks;
mod keys;
mod mail;
mod metrics;
mod mfa_policy;
mod nginx;
mod nul;
mod passkeys;
mod providers;
mod realtime;
mod revocation;
mod shutdown;
mod storage;
mod tenancy;
mod uploads;
mod users;
mod vector;
mod walk;

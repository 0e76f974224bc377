//! Integration tests of the HTTP layer: the real server on a real port, against real
//! PostgreSQL (a fresh database per test).

mod common;
mod docs;
mod errors;
mod health;

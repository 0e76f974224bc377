//! Integration tests of the database layer against real PostgreSQL (+pgvector), each test in a
//! database of its own.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly, like the tests that call them"
)]

mod migrations;
mod pool;

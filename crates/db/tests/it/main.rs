//! Integration tests of the database layer against real PostgreSQL (+pgvector), each test in a
//! database of its own.

mod migrations;
mod pool;

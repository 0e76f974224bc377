//! Sovereign's foundation: typed [`settings`], the [`diagnostics`] model every domain error
//! speaks, and [`telemetry`] set-up.
//!
//! This crate owns configuration and the vocabulary of failure. It must never depend on a web
//! framework or a database driver: every other crate depends on it, so it stays small and
//! compiles first.

pub mod diagnostics;
pub mod pagination;
pub mod quota;
pub mod settings;
pub mod telemetry;

pub use diagnostics::{Diagnostic, ErrorKind, FieldError};
pub use settings::{Environment, Settings};

//! Sovereign's foundation: the [`settings`] mechanism every crate reads its own settings with,
//! the [`diagnostics`] model every domain error speaks, and [`telemetry`] set-up.
//!
//! This crate owns how configuration is read and the vocabulary of failure, not any other
//! crate's settings. It must never depend on a web
//! framework or a database driver: every other crate depends on it, so it stays small and
//! compiles first.

pub mod diagnostics;
pub mod pagination;
pub mod quota;
pub mod settings;
pub mod telemetry;

pub use diagnostics::{Diagnostic, ErrorKind, FieldError};
pub use quota::Quota;
pub use settings::Environment;

#![doc = include_str!("../README.md")]

pub mod diagnostics;
pub mod pagination;
pub mod quota;
pub mod settings;
pub mod telemetry;

pub use diagnostics::{Diagnostic, ErrorKind, FieldError};
pub use quota::Quota;
pub use settings::Environment;

#![doc = include_str!("../README.md")]

pub mod audit;
mod catalogue;
mod dispatcher;
mod error;
pub mod origin;
mod outbox;
mod settings;

pub use catalogue::{EventType, catalogue_markdown};
pub use dispatcher::{BATCH, Dispatcher, DispatcherState, Sink};
pub use error::EventsError;
pub use outbox::{Actor, Event, NewEvent, Outcome, emit};
pub use settings::EventsSettings;

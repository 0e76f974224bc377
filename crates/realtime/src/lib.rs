#![doc = include_str!("../README.md")]

pub mod channel;
mod error;
mod hub;
pub mod protocol;
mod settings;
mod ticket;

pub use channel::{Action, Channel, Kind, authorize, authorize_server_publish};
pub use error::RealtimeError;
pub use hub::{
    Close, Connection, CredentialRef, Event, Frame, Hub, HubStatus, Identity, Refresh, frame_counts,
};
pub use settings::RealtimeSettings;
pub use ticket::{TicketClaims, Tickets};

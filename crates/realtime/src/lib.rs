#![doc = include_str!("../README.md")]

pub mod channel;
mod error;
mod hub;
pub mod protocol;
mod ticket;

pub use channel::{Action, Channel, Kind, authorize, authorize_server_publish};
pub use error::RealtimeError;
pub use hub::{
    Close, Connection, CredentialRef, Event, Hub, HubConfig, HubStatus, Identity, Refresh,
};
pub use ticket::{TicketClaims, Tickets};

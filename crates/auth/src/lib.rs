#![doc = include_str!("../README.md")]

mod accounts;
mod admin;
mod error;
pub mod jwt;
mod keys;
pub mod mailer;
mod model;
pub mod opaque;
pub mod password;
pub mod revocation;

pub use accounts::{
    Accounts, AccountsConfig, AccountsParts, Authenticated, ClientContext, MAX_NAME_CHARS,
    Registration, TokenPair, normalize_email,
};
pub use admin::{UserQuery, UserSort, UserUpdate};
pub use error::AuthError;
pub use jwt::{AccessClaims, TokenKeys};
pub use keys::{CreatedApiKey, MAX_KEY_DAYS, NewApiKey};
pub use mailer::{Email, LogMailer, Mailer, Outbox, SmtpMailer};
pub use model::{ApiKeyInfo, Credential, Principal, Role, Scope, SessionInfo, User};
pub use password::{PasswordHasher, PasswordPolicy};

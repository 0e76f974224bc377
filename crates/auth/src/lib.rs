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
mod settings;

pub use accounts::{
    Accounts, AccountsParts, Authenticated, ClientContext, MAX_NAME_CHARS, Registration, TokenPair,
    normalize_email,
};
pub use admin::{UserQuery, UserSort, UserUpdate};
pub use error::AuthError;
pub use jwt::{AccessClaims, TokenKeys};
pub use keys::{CreatedApiKey, MAX_KEY_DAYS, NewApiKey};
pub use mailer::{Email, LogMailer, Mailer, Outbox, SmtpMailer};
pub use model::{ApiKeyInfo, Credential, Principal, Role, Scope, SessionInfo, User};
pub use password::{PasswordHasher, PasswordPolicy};
pub use settings::{AuthSettings, MIN_SECRET_KEY_BYTES, MailSettings, SmtpSettings, SmtpTls};

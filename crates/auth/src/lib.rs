#![doc = include_str!("../README.md")]

mod accounts;
mod action_tokens;
mod admin;
mod authentication;
mod error;
pub mod jwt;
mod keys;
pub mod mailer;
mod model;
pub mod opaque;
pub mod password;
mod password_flows;
pub mod revocation;
mod sessions;
mod settings;
mod signin;
mod verification;

pub use accounts::{Accounts, AccountsParts, MAX_NAME_CHARS, normalize_email};
pub use admin::{UserQuery, UserSort, UserUpdate};
pub use authentication::Authenticated;
pub use error::AuthError;
pub use jwt::{AccessClaims, TokenKeys};
pub use keys::{CreatedApiKey, MAX_KEY_DAYS, NewApiKey};
pub use mailer::{Email, LogMailer, Mailer, Outbox, SmtpMailer};
pub use model::{ApiKeyInfo, Credential, Principal, Role, Scope, SessionInfo, User};
pub use password::{PasswordHasher, PasswordPolicy};
pub use sessions::{ClientContext, TokenPair};
pub use settings::{AuthSettings, MIN_SECRET_KEY_BYTES, MailSettings, SmtpSettings, SmtpTls};
pub use signin::Registration;

#![doc = include_str!("../README.md")]

mod accounts;
mod action_tokens;
mod admin;
mod audit;
mod authentication;
mod error;
mod factors;
pub mod jwt;
mod keys;
pub mod mailer;
mod model;
pub mod opaque;
mod passkeys;
pub mod password;
mod password_flows;
mod providers;
pub mod revocation;
mod sealed;
mod sessions;
mod settings;
mod signin;
mod verification;

pub use accounts::{Accounts, AccountsParts, MAX_NAME_CHARS, normalize_email};
pub use admin::{UserQuery, UserSort, UserUpdate};
pub use authentication::Authenticated;
pub use error::AuthError;
pub use factors::{
    AccessToken, EnrolledSession, EnrolmentConfirmation, Factor, Factors, MfaChallenge, MfaPolicy,
    MfaVerification, RECOVERY_CODES, Reauthentication, RecoveryCodes, RequireAal2,
    STEP_UP_WINDOW_SECONDS, SignIn, TotpEnrolment,
};
pub use jwt::{AccessClaims, TokenKeys};
pub use keys::{CreatedApiKey, MAX_KEY_DAYS, NewApiKey};
pub use mailer::{Email, LogMailer, Mailer, Outbox, SmtpMailer};
pub use model::{
    Aal, ApiKeyInfo, Assurance, Credential, Principal, Role, Scope, SessionInfo, User,
};
pub use passkeys::{PasskeyAnswer, PasskeyInfo, PasskeyOptions, PasskeySettings};
pub use password::{PasswordHasher, PasswordPolicy};
pub use providers::{
    CallbackParams, ClaimMapping, FlowCookie, Identity, LinkConfirmation, NewProvider,
    ProviderDetails, ProviderGrant, ProviderInfo, ProviderKind, ProviderSettings, ProviderUpdate,
    flow_cookie_name,
};
pub use sessions::{ClientContext, TokenPair};
pub use settings::{AuthSettings, MIN_SECRET_KEY_BYTES, MailSettings, SmtpSettings, SmtpTls};
pub use signin::Registration;

use std::borrow::Cow;
use std::time::Duration;

use sovereign_core::{Diagnostic, ErrorKind, FieldError};
use sovereign_db::DbError;
use sovereign_tenancy::TenancyError;

/// Everything that can go wrong with accounts, sessions and keys.
///
/// Authentication failures are deliberately coarse: a wrong password, an unknown address and a
/// deleted account are all [`AuthError::InvalidCredentials`], and every unusable token is
/// [`AuthError::InvalidToken`], so responses reveal nothing about which accounts exist.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials were presented.
    #[error("not authenticated")]
    NotAuthenticated,
    /// Wrong address or password.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A token or key that is malformed, forged, expired, revoked or of the wrong kind.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// A spent refresh token was presented again; its session has been revoked.
    #[error("refresh token reused; the session was revoked")]
    RefreshReused,
    /// The right password for a deactivated account.
    #[error("account disabled")]
    AccountDisabled,
    /// The current password given to a password change is wrong.
    #[error("current password is wrong")]
    WrongPassword,
    /// The caller's role (or key scope) does not allow this.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The operation needs a signed-in session, not an API key.
    #[error("a session is required")]
    SessionRequired,
    /// Changing one's own role, activity or existence through administration.
    #[error("administrators cannot {0} themselves")]
    SelfModification(&'static str),
    /// No such user, session or key in this tenant (also: another tenant's).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Input that breaks a rule (password policy, email format, lengths …).
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// The address belongs to another account of this tenant.
    #[error("email already in use")]
    EmailTaken,
    /// The sign-in challenge is unknown, expired or already completed.
    #[error("invalid sign-in challenge")]
    InvalidChallenge,
    /// A wrong second-factor code (or recovery code).
    #[error("invalid code")]
    InvalidCode,
    /// A TOTP code that was already accepted (or an earlier one).
    #[error("code already used")]
    CodeReused,
    /// A sensitive operation, and the session is neither `aal2` nor recently authenticated.
    #[error("reauthentication required")]
    ReauthenticationRequired,
    /// [`crate::Accounts::login`] of an account with a second factor (use `sign_in`).
    #[error("a second factor is required")]
    MfaRequired,
    /// A provider callback with an unknown, spent or expired `state` (or another provider's).
    #[error("invalid state")]
    InvalidState,
    /// The provider refused: an `error` on the callback, or the code (or PKCE verifier) refused.
    #[error("the provider refused: {0}")]
    ProviderRefused(String),
    /// The provider could not be reached, timed out or answered nonsense.
    #[error("the provider is unavailable: {0}")]
    ProviderUnavailable(String),
    /// An ID token that fails validation (signature, `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`).
    #[error("invalid ID token: {0}")]
    InvalidIdToken(String),
    /// `redirect_to` is not on the tenant's allow-list.
    #[error("redirect not allowed")]
    RedirectNotAllowed,
    /// An identity whose address belongs to an account, without both sides verified.
    #[error("the identity must be linked from the account")]
    LinkRequired,
    /// A first sign-in with a provider that does not allow sign-up.
    #[error("sign-up through this provider is disabled")]
    SignUpDisabled,
    /// A new identity without a verified address.
    #[error("the provider did not assert a verified address")]
    ProviderEmailUnverified,
    /// The identity is linked to another account.
    #[error("the identity belongs to another account")]
    IdentityInUse,
    /// Removing the account's last way to sign in.
    #[error("the last way to sign in cannot be removed")]
    LastSignInMethod,
    /// The one-time code of a provider sign-in is unknown, spent or expired.
    #[error("invalid provider code")]
    InvalidProviderCode,
    /// A passkey answer that fails: unknown or spent ceremony, wrong origin or relying party,
    /// no user verification, a bad signature, a counter that did not grow, an unknown passkey.
    #[error("invalid passkey: {0}")]
    InvalidPasskey(String),
    /// A refresh of an `aal1` session of an account the tenant's policy requires `aal2` of.
    #[error("the tenant requires a second factor")]
    Aal2Required,
    /// A provider slug already used in this tenant.
    #[error("slug taken")]
    SlugTaken,
    /// Too many attempts for this account.
    #[error("too many attempts")]
    RateLimited { retry_after: Duration },
    /// The configuration cannot produce working keys or mail.
    #[error("configuration: {0}")]
    Config(String),
    /// Hashing failed or its worker was lost.
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for AuthError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

impl AuthError {
    /// One invalid field.
    pub fn invalid(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, code, message)])
    }
}

impl Diagnostic for AuthError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotAuthenticated
            | Self::InvalidCredentials
            | Self::InvalidToken(_)
            | Self::RefreshReused
            | Self::InvalidChallenge
            | Self::ReauthenticationRequired
            | Self::MfaRequired
            | Self::ProviderRefused(_)
            | Self::InvalidIdToken(_)
            | Self::InvalidProviderCode
            | Self::InvalidPasskey(_)
            | Self::Aal2Required => ErrorKind::Unauthenticated,
            Self::InvalidState | Self::RedirectNotAllowed => ErrorKind::BadRequest,
            Self::ProviderUnavailable(_) => ErrorKind::Unavailable,
            Self::SignUpDisabled | Self::ProviderEmailUnverified => ErrorKind::Forbidden,
            Self::LinkRequired | Self::IdentityInUse | Self::LastSignInMethod | Self::SlugTaken => {
                ErrorKind::Conflict
            }
            Self::InvalidCode | Self::CodeReused => ErrorKind::Validation,
            Self::AccountDisabled | Self::Forbidden(_) | Self::SessionRequired => {
                ErrorKind::Forbidden
            }
            Self::WrongPassword | Self::Invalid(_) => ErrorKind::Validation,
            Self::SelfModification(_) | Self::EmailTaken => ErrorKind::Conflict,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Config(_) | Self::Hashing(_) => ErrorKind::Internal,
            Self::Tenancy(e) => e.kind(),
            Self::Db(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotAuthenticated => "not_authenticated",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidToken(_) => "invalid_token",
            Self::RefreshReused => "refresh_token_reused",
            Self::AccountDisabled => "account_disabled",
            Self::WrongPassword => "wrong_password",
            Self::Forbidden(_) => "forbidden",
            Self::SessionRequired => "session_required",
            Self::SelfModification(_) => "self_modification",
            Self::NotFound(_) => "not_found",
            Self::Invalid(_) => "validation_failed",
            Self::EmailTaken => "email_taken",
            Self::InvalidChallenge => "invalid_challenge",
            Self::InvalidCode => "invalid_code",
            Self::CodeReused => "code_already_used",
            Self::ReauthenticationRequired => "reauthentication_required",
            Self::MfaRequired => "mfa_required",
            Self::InvalidState => "invalid_state",
            Self::ProviderRefused(_) => "provider_refused",
            Self::ProviderUnavailable(_) => "provider_unavailable",
            Self::InvalidIdToken(_) => "invalid_id_token",
            Self::RedirectNotAllowed => "redirect_not_allowed",
            Self::LinkRequired => "identity_link_required",
            Self::SignUpDisabled => "sign_up_disabled",
            Self::ProviderEmailUnverified => "provider_email_unverified",
            Self::IdentityInUse => "identity_in_use",
            Self::LastSignInMethod => "last_sign_in_method",
            Self::InvalidProviderCode => "invalid_provider_code",
            Self::SlugTaken => "slug_taken",
            Self::InvalidPasskey(_) => "invalid_passkey",
            Self::Aal2Required => "aal2_required",
            Self::RateLimited { .. } => "rate_limited",
            Self::Config(_) | Self::Hashing(_) => "internal_error",
            Self::Tenancy(e) => e.code(),
            Self::Db(e) => e.code(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            Self::NotAuthenticated => {
                "This request needs credentials: a bearer token or an API key.".to_owned()
            }
            Self::InvalidCredentials => "The email address or password is wrong.".to_owned(),
            Self::InvalidToken(_) => "The token is invalid, expired or revoked.".to_owned(),
            Self::RefreshReused => {
                "This refresh token was already used; the session has been signed out.".to_owned()
            }
            Self::AccountDisabled => "This account is disabled.".to_owned(),
            Self::WrongPassword => "The current password is wrong.".to_owned(),
            Self::Forbidden(why) => format!("You may not do this: {why}."),
            Self::SessionRequired => {
                "This needs a signed-in session; API keys cannot do it.".to_owned()
            }
            Self::SelfModification(what) => {
                format!("Administrators cannot {what} themselves through user administration.")
            }
            Self::NotFound(what) => format!("No such {what}."),
            Self::Invalid(_) => "Some fields are invalid; see `errors`.".to_owned(),
            Self::EmailTaken => "Another account already uses this email address.".to_owned(),
            Self::InvalidChallenge => {
                "The sign-in challenge is unknown, expired or already completed.".to_owned()
            }
            Self::InvalidCode => "The code is wrong.".to_owned(),
            Self::CodeReused => "This code was already used; wait for the next one.".to_owned(),
            Self::ReauthenticationRequired => {
                "This needs a recent sign-in or a second factor.".to_owned()
            }
            Self::MfaRequired => "This account signs in with a second factor.".to_owned(),
            Self::InvalidState => {
                "This sign-in is unknown, expired or already completed.".to_owned()
            }
            Self::ProviderRefused(_) => "The sign-in provider refused the sign-in.".to_owned(),
            Self::ProviderUnavailable(_) => {
                "The sign-in provider did not answer properly; try again later.".to_owned()
            }
            Self::InvalidIdToken(_) => {
                "The sign-in provider's answer failed validation.".to_owned()
            }
            Self::RedirectNotAllowed => {
                "`redirect_to` is not one of this tenant's redirect URLs.".to_owned()
            }
            Self::LinkRequired => "An account with this address exists. Sign in to it, then \
                 link this provider from the account."
                .to_owned(),
            Self::SignUpDisabled => {
                "No account is linked to this identity, and this provider does not create accounts."
                    .to_owned()
            }
            Self::ProviderEmailUnverified => {
                "The sign-in provider did not confirm a verified email address.".to_owned()
            }
            Self::IdentityInUse => "This identity is linked to another account.".to_owned(),
            Self::LastSignInMethod => {
                "This is the account's last way to sign in; add another first.".to_owned()
            }
            Self::InvalidProviderCode => {
                "The sign-in code is unknown, expired or already used.".to_owned()
            }
            Self::SlugTaken => "This tenant already has a provider with this slug.".to_owned(),
            Self::InvalidPasskey(_) => "The passkey could not be verified.".to_owned(),
            Self::Aal2Required => "This tenant requires a second factor for this account; the \
                 session has ended."
                .to_owned(),
            Self::RateLimited { .. } => {
                "Too many attempts for this account; wait and retry.".to_owned()
            }
            Self::Config(_) | Self::Hashing(_) => {
                sovereign_core::diagnostics::GENERIC_INTERNAL_DETAIL.to_owned()
            }
            Self::Tenancy(e) => e.public_detail(),
            Self::Db(e) => e.public_detail(),
        }
    }

    fn suggestion(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::NotAuthenticated => Some(Cow::Borrowed(
                "send `Authorization: Bearer <access token>` (from /api/v1/auth/login) or `X-API-Key: <key>`",
            )),
            Self::InvalidToken(_) => Some(Cow::Borrowed(
                "sign in again, or use /api/v1/auth/refresh to get a new access token",
            )),
            Self::RefreshReused
            | Self::InvalidChallenge
            | Self::InvalidState
            | Self::InvalidProviderCode => Some(Cow::Borrowed("sign in again")),
            Self::Aal2Required => Some(Cow::Borrowed(
                "sign in again, and add an authenticator when asked",
            )),
            Self::RedirectNotAllowed => Some(Cow::Borrowed(
                "add the URL with PUT /api/v1/auth/redirect-urls (or AUTH_REDIRECT_URLS)",
            )),
            Self::ReauthenticationRequired => Some(Cow::Borrowed(
                "sign in again, or complete a second factor, then retry",
            )),
            Self::SessionRequired => Some(Cow::Borrowed("sign in and use the access token")),
            Self::Tenancy(e) => e.suggestion(),
            Self::Db(e) => e.suggestion(),
            _ => None,
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid(fields) => fields.clone(),
            Self::WrongPassword => vec![FieldError::new(
                "current_password",
                "wrong_password",
                "is not the current password",
            )],
            Self::InvalidCode => vec![FieldError::new(
                "code",
                "invalid_code",
                "is not a valid code",
            )],
            Self::CodeReused => vec![FieldError::new(
                "code",
                "code_already_used",
                "was already used",
            )],
            Self::Tenancy(e) => e.field_errors(),
            _ => Vec::new(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            Self::Tenancy(e) => e.retry_after(),
            Self::Db(e) => e.retry_after(),
            _ => None,
        }
    }
}

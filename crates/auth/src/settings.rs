//! The account settings: token keys and lifetimes, password hashing and policy, per-account
//! throttling, and how mail leaves the server.

use std::time::Duration;

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sovereign_core::settings::DefaultValue::{Computed, Unset, Value};
use sovereign_core::settings::{
    Environment, ReadSettings, Reader, SettingSpec, SettingValue, cpus, is_loopback_host,
};
use sovereign_core::{Quota, setting};
use url::Url;

use crate::passkeys::{PasskeySettings, read_passkeys};
use crate::providers::ProviderSettings;
use crate::providers::settings::read_providers;

setting!(
    SECRET_KEY,
    "SECRET_KEY",
    Computed("random per process in development; required otherwise"),
    "HMAC key for signing tokens: at least 32 bytes of random text (`openssl rand -base64 48`).",
    secret
);
setting!(
    ACCESS_TOKEN_EXPIRE_MINUTES,
    "ACCESS_TOKEN_EXPIRE_MINUTES",
    Value("15"),
    "Lifetime of access tokens, in minutes (1 to 1440)."
);
setting!(
    REFRESH_TOKEN_EXPIRE_DAYS,
    "REFRESH_TOKEN_EXPIRE_DAYS",
    Value("7"),
    "Lifetime of refresh tokens (sessions), in days (1 to 365)."
);
setting!(
    REFRESH_TOKEN_REUSE_SECONDS,
    "REFRESH_TOKEN_REUSE_SECONDS",
    Value("5"),
    "How long a spent refresh token presented again still answers with the same successor pair it already produced (0 to 60 seconds; 0: never), so that parallel refreshes of one session do not revoke it. After this, presenting it revokes the session."
);
setting!(
    JWT_ISSUER,
    "JWT_ISSUER",
    Value("sovereign"),
    "`iss` of the access tokens this server issues, and the only issuer it accepts."
);
setting!(
    JWT_AUDIENCE,
    "JWT_AUDIENCE",
    Value("sovereign-api"),
    "`aud` of the access tokens this server issues, and the only audience it accepts."
);
setting!(
    JWT_PRIVATE_KEY_FILE,
    "JWT_PRIVATE_KEY_FILE",
    Unset,
    "An Ed25519 private key (PKCS#8 PEM, `openssl genpkey -algorithm ed25519`). When set, access tokens are signed with EdDSA instead of HS256, and `/.well-known/jwks.json` publishes the public keys."
);
setting!(
    JWT_PUBLIC_KEY_FILES,
    "JWT_PUBLIC_KEY_FILES",
    Unset,
    "Extra Ed25519 public keys (PEM files, comma-separated) whose tokens are still accepted: the previous keys during a rotation. Needs `JWT_PRIVATE_KEY_FILE`."
);
setting!(
    BCRYPT_COST,
    "BCRYPT_COST",
    Value("12"),
    "bcrypt work factor for password hashes (10 to 16; lower values are accepted only in development)."
);
setting!(
    PASSWORD_MIN_LENGTH,
    "PASSWORD_MIN_LENGTH",
    Value("12"),
    "Shortest password accepted, in characters (8 to 64). Up to 256 characters are accepted; there are no composition rules."
);
setting!(
    PASSWORD_HASH_CONCURRENCY,
    "PASSWORD_HASH_CONCURRENCY",
    Computed("number of CPUs"),
    "Threads that hash passwords (at a lowered CPU priority); further logins queue, so a login storm cannot starve the server."
);
setting!(
    PASSWORD_RESET_EXPIRE_MINUTES,
    "PASSWORD_RESET_EXPIRE_MINUTES",
    Value("30"),
    "Lifetime of password-reset tokens, in minutes (5 to 1440)."
);
setting!(
    EMAIL_VERIFY_EXPIRE_HOURS,
    "EMAIL_VERIFY_EXPIRE_HOURS",
    Value("48"),
    "Lifetime of email-verification tokens, in hours (1 to 720)."
);
setting!(
    RATE_LIMIT_ACCOUNT,
    "RATE_LIMIT_ACCOUNT",
    Value("10/minute"),
    "Quota per account on login, refresh, password reset and email verification, whatever the client address."
);
setting!(
    PUBLIC_URL,
    "PUBLIC_URL",
    Value("http://localhost:8000"),
    "Base URL of the web client, for links in mail: `{PUBLIC_URL}/reset-password?token=…` and `{PUBLIC_URL}/verify-email?token=…`."
);
setting!(
    SMTP_HOST,
    "SMTP_HOST",
    Unset,
    "Mail server for password-reset and verification mail. Unset: mail is written to the log instead (development)."
);
setting!(SMTP_PORT, "SMTP_PORT", Value("587"), "Mail server port.");
setting!(
    SMTP_TLS,
    "SMTP_TLS",
    Value("starttls"),
    "`starttls`, `tls` (implicit TLS, usually port 465) or `none` (a relay on localhost only)."
);
setting!(
    SMTP_USER,
    "SMTP_USER",
    Unset,
    "Mail server user name, if it requires authentication."
);
setting!(
    SMTP_PASSWORD,
    "SMTP_PASSWORD",
    Unset,
    "Mail server password.",
    secret
);
setting!(
    EMAILS_FROM,
    "EMAILS_FROM",
    Value("Sovereign <no-reply@localhost>"),
    "Sender of the mail the server sends, as `Name <address>` or an address."
);

/// Tokens, sessions, passwords and the links mailed to users.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub secret_key: SecretString,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// How long a spent refresh token still answers with its successor pair.
    pub refresh_reuse_interval: Duration,
    pub issuer: String,
    pub audience: String,
    /// Ed25519 signing key (PKCS#8 PEM text); `None` signs with HS256 from `secret_key`.
    pub private_key_pem: Option<SecretString>,
    /// Ed25519 public keys (PEM text) still accepted, for rotation.
    pub extra_public_keys_pem: Vec<String>,
    pub bcrypt_cost: u32,
    pub password_min_length: usize,
    pub hash_concurrency: usize,
    pub password_reset_ttl: Duration,
    pub email_verify_ttl: Duration,
    /// Per account, on login, refresh, reset and verification.
    pub account_quota: Quota,
    /// Base URL of the web client, for mailed links (no trailing slash).
    pub public_url: String,
    /// Sign-in with OpenID Connect and OAuth providers.
    pub providers: ProviderSettings,
    /// Passkeys.
    pub passkeys: PasskeySettings,
}

impl AuthSettings {
    /// The signing key's bytes.
    #[must_use]
    pub fn secret_key_bytes(&self) -> &[u8] {
        self.secret_key.expose_secret().as_bytes()
    }
}

/// How mail leaves the server.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `None`: mail is logged, not sent.
    pub smtp: Option<SmtpSettings>,
    pub from: String,
    /// Whether logged mail includes its body (links and their tokens): in development only.
    pub log_bodies: bool,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub user: Option<String>,
    pub password: Option<SecretString>,
}

/// Transport security towards the mail server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpTls {
    #[default]
    StartTls,
    Tls,
    None,
}

impl SettingValue for SmtpTls {
    const EXPECTED: &'static str = "starttls, tls or none";
    fn parse_setting(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "starttls" => Ok(Self::StartTls),
            "tls" | "ssl" => Ok(Self::Tls),
            "none" | "off" | "plain" => Ok(Self::None),
            _ => Err(format!("expected {}", Self::EXPECTED)),
        }
    }
}

impl ReadSettings for AuthSettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        r.section("Accounts and tokens");
        let mut settings = read_auth(r);
        r.section("Sign-in providers");
        settings.providers = read_providers(r);
        r.section("Passkeys");
        settings.passkeys = read_passkeys(r, &settings.public_url);
        Some(settings)
    }
}

impl ReadSettings for MailSettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        r.section("Mail");
        Some(read_mail(r))
    }
}

/// Values that must never be used as `SECRET_KEY` outside development.
const KNOWN_WEAK_SECRETS: &[&str] = &[
    "changeme",
    "change-me",
    "change_me",
    "changethis",
    "secret",
    "secret-key",
    "secret_key",
    "your-secret-key",
    "your-secret-key-here",
    "your_secret_key_here",
    "supersecret",
    "development",
    "sovereign",
    "password",
];

/// Minimum `SECRET_KEY` length in bytes (256 bits, RFC 8725 §3.5).
pub const MIN_SECRET_KEY_BYTES: usize = 32;

fn read_auth(r: &mut Reader<'_>) -> AuthSettings {
    let environment = r.environment();
    let secret_key = match r.raw(&SECRET_KEY) {
        Some(key) => {
            check_secret_key(r, key, environment);
            SecretString::from(key.to_owned())
        }
        None if environment.is_development() => {
            r.warning(
                SECRET_KEY.name,
                "not set; using a random key for this process, so tokens end with a restart",
                "set SECRET_KEY to the output of `openssl rand -base64 48`".to_owned(),
            );
            SecretString::from(random_secret())
        }
        None => {
            r.problem(
                SECRET_KEY.name,
                format!("is required in {environment}"),
                "set SECRET_KEY to the output of `openssl rand -base64 48`".to_owned(),
            );
            SecretString::from(String::new())
        }
    };
    let access_token_ttl =
        Duration::from_secs(60 * r.bounded(&ACCESS_TOKEN_EXPIRE_MINUTES, 1, 1440));
    let refresh_token_ttl =
        Duration::from_secs(86_400 * r.bounded(&REFRESH_TOKEN_EXPIRE_DAYS, 1, 365));
    let issuer: String = r.value(&JWT_ISSUER);
    let audience: String = r.value(&JWT_AUDIENCE);
    let private_key_pem = read_pem_file(r, &JWT_PRIVATE_KEY_FILE).map(SecretString::from);
    let extra_public_keys_pem: Vec<String> = r
        .raw(&JWT_PUBLIC_KEY_FILES)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter_map(|path| read_file(r, &JWT_PUBLIC_KEY_FILES, &path))
        .collect();
    if !extra_public_keys_pem.is_empty() && private_key_pem.is_none() {
        r.problem(
            JWT_PUBLIC_KEY_FILES.name,
            "extra verification keys need an Ed25519 signing key",
            "set JWT_PRIVATE_KEY_FILE too, or unset JWT_PUBLIC_KEY_FILES".to_owned(),
        );
    }
    let bcrypt_cost = if environment.is_development() {
        let cost = r.bounded(&BCRYPT_COST, 4, 16);
        if cost < 10 {
            r.warning(
                BCRYPT_COST.name,
                format!("{cost} is below 10: fine for tests, refused in staging and production"),
                "unset BCRYPT_COST to use 12".to_owned(),
            );
        }
        cost
    } else {
        r.bounded(&BCRYPT_COST, 10, 16)
    };
    let cpus = cpus();
    let hash_concurrency = r
        .optional::<usize>(&PASSWORD_HASH_CONCURRENCY)
        .unwrap_or(cpus);
    if !(1..=256).contains(&hash_concurrency) {
        r.problem(
            PASSWORD_HASH_CONCURRENCY.name,
            format!("{hash_concurrency} is out of range"),
            format!("set it from 1 to 256, or unset it to use the CPU count ({cpus})"),
        );
    }
    let public_url = r
        .optional::<Url>(&PUBLIC_URL)
        .map_or_else(|| "http://localhost:8000".to_owned(), |u| u.to_string());
    AuthSettings {
        secret_key,
        access_token_ttl,
        refresh_token_ttl,
        refresh_reuse_interval: Duration::from_secs(r.bounded(&REFRESH_TOKEN_REUSE_SECONDS, 0, 60)),
        issuer,
        audience,
        private_key_pem,
        extra_public_keys_pem,
        bcrypt_cost,
        password_min_length: r.bounded(&PASSWORD_MIN_LENGTH, 8, 64),
        hash_concurrency: hash_concurrency.clamp(1, 256),
        password_reset_ttl: Duration::from_secs(
            60 * r.bounded(&PASSWORD_RESET_EXPIRE_MINUTES, 5, 1440),
        ),
        email_verify_ttl: Duration::from_secs(3600 * r.bounded(&EMAIL_VERIFY_EXPIRE_HOURS, 1, 720)),
        account_quota: r.value(&RATE_LIMIT_ACCOUNT),
        public_url: public_url.trim_end_matches('/').to_owned(),
        providers: ProviderSettings::default(),
        passkeys: PasskeySettings::default(),
    }
}

/// The text of the file a setting names; a problem when it cannot be read.
fn read_pem_file(r: &mut Reader<'_>, spec: &'static SettingSpec) -> Option<String> {
    let path = r.raw(spec)?.to_owned();
    read_file(r, spec, &path)
}

fn read_file(r: &mut Reader<'_>, spec: &'static SettingSpec, path: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.contains("-----BEGIN ") => Some(text),
        Ok(_) => {
            r.problem(
                spec.name,
                format!("`{path}` is not a PEM file"),
                "create one with `openssl genpkey -algorithm ed25519 -out jwt.pem`".to_owned(),
            );
            None
        }
        Err(e) => {
            r.problem(
                spec.name,
                format!("cannot read `{path}`: {e}"),
                "give the path of a readable PEM file".to_owned(),
            );
            None
        }
    }
}

fn read_mail(r: &mut Reader<'_>) -> MailSettings {
    let environment = r.environment();
    let from: String = r.value(&EMAILS_FROM);
    if !from.contains('@') {
        r.problem(
            EMAILS_FROM.name,
            format!("`{from}` has no address"),
            "use `Name <address@example.com>` or an address".to_owned(),
        );
    }
    let host = r.raw(&SMTP_HOST).map(str::to_owned);
    let port: u16 = r.value(&SMTP_PORT);
    let tls: SmtpTls = r.value(&SMTP_TLS);
    let user = r.raw(&SMTP_USER).map(str::to_owned);
    let password = r.secret(&SMTP_PASSWORD);
    let smtp = host.map(|host| {
        if tls == SmtpTls::None && environment.is_production() && !is_loopback_host(&host) {
            r.problem(
                SMTP_TLS.name,
                format!("mail to `{host}` would travel unencrypted"),
                "use SMTP_TLS=starttls or tls; `none` is for a relay on localhost".to_owned(),
            );
        }
        SmtpSettings {
            host,
            port,
            tls,
            user,
            password,
        }
    });
    MailSettings {
        smtp,
        from,
        log_bodies: environment.is_development(),
    }
}

fn check_secret_key(r: &mut Reader<'_>, key: &str, environment: Environment) {
    let suggestion = || "set SECRET_KEY to the output of `openssl rand -base64 48`".to_owned();
    let mut weaknesses = Vec::new();
    if key.len() < MIN_SECRET_KEY_BYTES {
        weaknesses.push(format!(
            "is {} bytes long; at least {MIN_SECRET_KEY_BYTES} are needed",
            key.len()
        ));
    }
    let lowered = key.to_ascii_lowercase();
    if KNOWN_WEAK_SECRETS
        .iter()
        .any(|weak| lowered.trim_matches(|c: char| !c.is_ascii_alphanumeric()) == *weak)
    {
        weaknesses.push("is a well-known placeholder value".to_owned());
    }
    let mut distinct: Vec<char> = key.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if key.len() >= MIN_SECRET_KEY_BYTES && distinct.len() < 10 {
        weaknesses.push("uses fewer than 10 distinct characters, so it is not random".to_owned());
    }
    for weakness in weaknesses {
        if environment.is_development() {
            r.warning(SECRET_KEY.name, weakness, suggestion());
        } else {
            r.problem(SECRET_KEY.name, weakness, suggestion());
        }
    }
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

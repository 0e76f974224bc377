//! Opaque secrets: refresh tokens, API keys, password-reset and verification tokens.
//!
//! Shape: `sov<kind>_<tenant: 32 hex>_<secret: 43 base64url chars = 256 random bits>`. The tenant
//! is not secret; it tells the server which tenant's rows to look in (the lookup still runs under
//! row-level security, and a forged tenant simply finds nothing). Only the SHA-256 of the whole
//! token is stored. The kind prefix keeps one kind from ever passing for another, and none of
//! them parses as a JWT.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The kinds of opaque token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Refresh,
    ApiKey,
    PasswordReset,
    EmailVerification,
    /// A sign-in waiting for its second factor.
    MfaChallenge,
    /// The `state` of a sign-in with a provider.
    ProviderState,
    /// The one-time code an app exchanges after a sign-in with a provider.
    ProviderGrant,
    /// A passkey registration, sign-in or re-authentication in flight.
    PasskeyCeremony,
    /// An identity a provider vouched for, waiting for its account to confirm the link.
    ProviderLink,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Refresh => "sovrt",
            Self::ApiKey => "sovak",
            Self::PasswordReset => "sovpr",
            Self::EmailVerification => "sovev",
            Self::MfaChallenge => "sovmc",
            Self::ProviderState => "sovps",
            Self::ProviderGrant => "sovpg",
            Self::PasskeyCeremony => "sovpc",
            Self::ProviderLink => "sovpl",
        }
    }
}

const SECRET_CHARS: usize = 43;

/// A freshly minted token: the text to hand out once, and its digest to store.
#[derive(Debug, Clone)]
pub struct Minted {
    pub token: String,
    pub digest: [u8; 32],
}

/// Mints a token of `kind` for `tenant`.
#[must_use]
pub fn mint(kind: Kind, tenant: Uuid) -> Minted {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!(
        "{}_{}_{}",
        kind.prefix(),
        tenant.simple(),
        URL_SAFE_NO_PAD.encode(secret)
    );
    let digest = digest(&token);
    Minted { token, digest }
}

/// The token of `kind` that `parent` is exchanged for: a keyed function of the parent
/// (HMAC-SHA256 with `key`), so the same parent always yields the same successor and nobody
/// without the key can compute it. Refresh tokens use it to answer a repeated exchange inside
/// the reuse interval with the very same successor.
#[must_use]
pub fn successor(kind: Kind, tenant: Uuid, key: &[u8], parent: &str) -> Minted {
    let secret = keyed(key, b"sovereign successor token v1", parent);
    let token = format!(
        "{}_{}_{}",
        kind.prefix(),
        tenant.simple(),
        URL_SAFE_NO_PAD.encode(secret)
    );
    let digest = digest(&token);
    Minted { token, digest }
}

/// HMAC-SHA256 of `purpose` and `input` under `key`.
#[must_use]
pub fn keyed(key: &[u8], purpose: &[u8], input: &str) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(purpose);
    mac.update(&[0]);
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The stored form of a token.
#[must_use]
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A presented token of the expected kind: its tenant and digest. `None` for anything else.
#[must_use]
pub fn parse(kind: Kind, token: &str) -> Option<(Uuid, [u8; 32])> {
    let rest = token.strip_prefix(kind.prefix())?.strip_prefix('_')?;
    let (tenant, secret) = rest.split_once('_')?;
    if tenant.len() != 32 || secret.len() != SECRET_CHARS {
        return None;
    }
    if !secret
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let tenant = Uuid::try_parse(tenant).ok()?;
    Some((tenant, digest(token)))
}

/// The visible part of an API key shown in listings: the secret's first 8 characters.
#[must_use]
pub fn display_prefix(token: &str) -> String {
    // `sovak_<tenant>_<secret>`: the secret itself may contain `_`.
    token
        .splitn(3, '_')
        .nth(2)
        .map(|s| s.chars().take(8).collect())
        .unwrap_or_default()
}

/// Whether `token` looks like an API key (to route `Authorization: Bearer` values).
#[must_use]
pub fn is_api_key(token: &str) -> bool {
    token.starts_with("sovak_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_kinds_do_not_mix() {
        let tenant = Uuid::now_v7();
        let minted = mint(Kind::Refresh, tenant);
        assert_eq!(
            parse(Kind::Refresh, &minted.token),
            Some((tenant, minted.digest))
        );
        assert_eq!(parse(Kind::ApiKey, &minted.token), None);
        assert_eq!(parse(Kind::PasswordReset, &minted.token), None);
        let other = mint(Kind::Refresh, tenant);
        assert_ne!(minted.token, other.token);
        assert_ne!(minted.digest, other.digest);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let tenant = Uuid::now_v7();
        let good = mint(Kind::ApiKey, tenant).token;
        for bad in [
            String::new(),
            "sovak_".to_owned(),
            good[..good.len() - 1].to_owned(),
            format!("{good}x"),
            good.replace("sovak_", "sovak__"),
            format!("sovak_{}_{}", "z".repeat(32), "a".repeat(43)),
            format!("sovak_{}_{}", tenant.simple(), "a".repeat(42) + "."),
        ] {
            assert_eq!(parse(Kind::ApiKey, &bad), None, "{bad}");
        }
        assert!(is_api_key(&good));
        let secret = good.splitn(3, '_').nth(2).unwrap();
        assert_eq!(display_prefix(&good), secret[..8]);
        let underscored = format!("sovak_{}_ab_cdefghij{}", tenant.simple(), "k".repeat(32));
        assert_eq!(display_prefix(&underscored), "ab_cdefg");
    }
}

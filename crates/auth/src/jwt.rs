//! Access tokens: short-lived JWTs (RFC 9068 shape) that name their session.
//!
//! - The algorithm is pinned: HS256 from `SECRET_KEY`, or EdDSA (Ed25519) when a private key is
//!   configured. Anything else, `none` included, is refused before any signature check.
//! - Keys come only from configuration. `jku`, `x5u` and `jwk` headers are ignored; `kid` only
//!   selects among the configured EdDSA keys and is otherwise untrusted.
//! - `exp`, `nbf`, `iat`, `iss`, `aud` and `sub` are required; `iss` and `aud` must be ours;
//!   leeway is [`LEEWAY_SECONDS`].
//! - The header must say `typ: at+jwt`; no other token this server makes can pass as an access
//!   token (refresh, reset and verification tokens are opaque, and are not JWTs at all).

use std::collections::HashMap;
use std::time::Duration;

use crate::settings::AuthSettings;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AuthError;
use crate::model::{Aal, Assurance, Role, User};

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECONDS: u64 = 30;
/// The `typ` header of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user's id.
    pub sub: Uuid,
    pub tenant: Uuid,
    pub role: Role,
    /// The session this token belongs to; revoking it stops the token.
    pub sid: Uuid,
    pub jti: Uuid,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Assurance level of the session (`aal1`, `aal2`); absent in tokens from before factors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aal: Option<Aal>,
    /// Authentication methods (`pwd`, `otp`, `rc`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// When the user last proved who they are (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

impl AccessClaims {
    /// The session's assurance as this token states it (a password sign-in at `iat` for tokens
    /// from before factors).
    #[must_use]
    pub fn assurance(&self) -> Assurance {
        Assurance {
            aal: self.aal.unwrap_or(Aal::Aal1),
            amr: if self.amr.is_empty() {
                vec!["pwd".to_owned()]
            } else {
                self.amr.clone()
            },
            auth_time: self.auth_time.unwrap_or(self.iat),
        }
    }
}

/// A freshly signed access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: Duration,
}

/// Signing and verification keys, with the pinned algorithm.
pub struct TokenKeys {
    algorithm: Algorithm,
    signing: EncodingKey,
    signing_kid: Option<String>,
    /// By `kid` for EdDSA; one entry under "" for HS256.
    verifying: HashMap<String, DecodingKey>,
    validation: Validation,
    jwks: JwkSet,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("algorithm", &self.algorithm)
            .field("signing_kid", &self.signing_kid)
            .field("verifying", &self.verifying.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Keys from the settings: EdDSA when `JWT_PRIVATE_KEY_FILE` is set, HS256 otherwise.
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, AuthError> {
        match &settings.private_key_pem {
            Some(pem) => Self::eddsa(
                pem.expose_secret(),
                &settings.extra_public_keys_pem,
                &settings.issuer,
                &settings.audience,
                settings.access_token_ttl,
            ),
            None => Ok(Self::hs256(
                settings.secret_key_bytes(),
                &settings.issuer,
                &settings.audience,
                settings.access_token_ttl,
            )),
        }
    }

    /// HS256 with a shared secret. The JWKS document is empty: the secret is never published.
    #[must_use]
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str, ttl: Duration) -> Self {
        let verifying = HashMap::from([(String::new(), DecodingKey::from_secret(secret))]);
        Self::assemble(
            Algorithm::HS256,
            EncodingKey::from_secret(secret),
            None,
            verifying,
            JwkSet { keys: Vec::new() },
            issuer,
            audience,
            ttl,
        )
    }

    /// EdDSA with an Ed25519 private key (PKCS#8 PEM) and optional extra public keys (PEM) that
    /// are still accepted, e.g. the previous key during a rotation. Each key's id is its RFC 7638
    /// thumbprint.
    pub fn eddsa(
        private_pem: &str,
        extra_public_pems: &[String],
        issuer: &str,
        audience: &str,
        ttl: Duration,
    ) -> Result<Self, AuthError> {
        let bad = |what: &str, e: jsonwebtoken::errors::Error| {
            AuthError::Config(format!("{what} is not an Ed25519 key: {e}"))
        };
        let signing = EncodingKey::from_ed_pem(private_pem.as_bytes())
            .map_err(|e| bad("JWT_PRIVATE_KEY_FILE", e))?;
        let mut current = Jwk::from_encoding_key(&signing, Algorithm::EdDSA)
            .map_err(|e| bad("JWT_PRIVATE_KEY_FILE", e))?;
        let kid = publish(&mut current)?;
        let mut verifying = HashMap::new();
        verifying.insert(
            kid.clone(),
            DecodingKey::from_jwk(&current).map_err(|e| bad("JWT_PRIVATE_KEY_FILE", e))?,
        );
        let mut keys = vec![current];
        for pem in extra_public_pems {
            let decoding = DecodingKey::from_ed_pem(pem.as_bytes())
                .map_err(|e| bad("JWT_PUBLIC_KEY_FILES", e))?;
            let mut jwk = Jwk::from_decoding_key(&decoding, Some(Algorithm::EdDSA))
                .map_err(|e| bad("JWT_PUBLIC_KEY_FILES", e))?;
            let kid = publish(&mut jwk)?;
            if verifying.insert(kid, decoding).is_none() {
                keys.push(jwk);
            }
        }
        Ok(Self::assemble(
            Algorithm::EdDSA,
            signing,
            Some(kid),
            verifying,
            JwkSet { keys },
            issuer,
            audience,
            ttl,
        ))
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "private assembly of the parts above"
    )]
    fn assemble(
        algorithm: Algorithm,
        signing: EncodingKey,
        signing_kid: Option<String>,
        verifying: HashMap<String, DecodingKey>,
        jwks: JwkSet,
        issuer: &str,
        audience: &str,
        ttl: Duration,
    ) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_audience(&[audience]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        Self {
            algorithm,
            signing,
            signing_kid,
            verifying,
            validation,
            jwks,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        }
    }

    /// The public keys, as a JWKS document (empty with HS256).
    #[must_use]
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Signs an access token for `user` in session `session`.
    pub fn issue(&self, user: &User, session: Uuid) -> Result<IssuedToken, AuthError> {
        self.issue_at(
            user,
            session,
            chrono::Utc::now().timestamp(),
            Uuid::now_v7(),
            &Assurance::password(),
        )
    }

    /// Signs an access token issued at `iat` (seconds) with id `jti`: the same inputs give the
    /// same claims, so a repeated refresh inside the reuse interval can answer with the same
    /// token. `expires_in` counts from now.
    pub fn issue_at(
        &self,
        user: &User,
        session: Uuid,
        iat: i64,
        jti: Uuid,
        assurance: &Assurance,
    ) -> Result<IssuedToken, AuthError> {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let exp = iat.saturating_add(ttl);
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.id,
            tenant: user.tenant_id,
            role: user.role,
            sid: session,
            jti,
            iat,
            nbf: iat,
            exp,
            aal: Some(assurance.aal),
            amr: assurance.amr.clone(),
            auth_time: Some(assurance.auth_time),
        };
        let mut header = Header::new(self.algorithm);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid.clone_from(&self.signing_kid);
        let token = jsonwebtoken::encode(&header, &claims, &self.signing)
            .map_err(|e| AuthError::Config(format!("cannot sign tokens: {e}")))?;
        let now = chrono::Utc::now().timestamp();
        Ok(IssuedToken {
            token,
            expires_in: Duration::from_secs(u64::try_from(exp.saturating_sub(now)).unwrap_or(0)),
        })
    }

    /// Verifies an access token's header, signature and claims. Says nothing about whether its
    /// session is still live; [`crate::Accounts::authenticate`] checks that.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken("malformed"))?;
        if header.alg != self.algorithm {
            return Err(AuthError::InvalidToken("algorithm not accepted"));
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
                || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(AuthError::InvalidToken("not an access token"));
        }
        let key = match self.algorithm {
            Algorithm::EdDSA => match header.kid.as_deref() {
                Some(kid) => self.verifying.get(kid),
                None => self
                    .signing_kid
                    .as_deref()
                    .and_then(|kid| self.verifying.get(kid)),
            },
            _ => self.verifying.get(""),
        }
        .ok_or(AuthError::InvalidToken("unknown key"))?;
        jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                tracing::debug!(error = %e, "access token refused");
                AuthError::InvalidToken("verification failed")
            })
    }
}

/// Marks a JWK for signature verification with its RFC 7638 thumbprint as `kid`.
fn publish(jwk: &mut Jwk) -> Result<String, AuthError> {
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| AuthError::Config(format!("cannot compute a key id: {e}")))?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(kid)
}

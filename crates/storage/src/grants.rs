//! Signed URLs of this server: a token granting one thing (reading one object, or writing one
//! part of one upload) in one tenant until it expires, MACed (HMAC-SHA256) with a key the
//! server derives from its secret. The token carries what it grants, so a URL whose token was
//! made for another object, part or tenant is refused, and so is any changed byte.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::{Storage, StorageError};

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "g", rename_all = "lowercase")]
pub enum Grant {
    /// Read `key` of `bucket`.
    Read {
        #[serde(rename = "t")]
        tenant: Uuid,
        #[serde(rename = "b")]
        bucket: String,
        #[serde(rename = "k")]
        key: String,
        /// The content it was signed for: a key deleted and written again by someone else is
        /// not the object the URL was given for.
        #[serde(rename = "h")]
        sha256: String,
    },
    /// Write part `part` of `upload`.
    Part {
        #[serde(rename = "t")]
        tenant: Uuid,
        #[serde(rename = "u")]
        upload: Uuid,
        #[serde(rename = "n")]
        part: u32,
    },
}

#[derive(Serialize, Deserialize)]
struct Signed {
    #[serde(flatten)]
    grant: Grant,
    /// Expiry, in Unix seconds.
    e: i64,
}

/// The key that signs and checks tokens.
#[derive(Clone)]
pub(crate) struct UrlKey {
    key: [u8; 32],
}

impl UrlKey {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// The key for storage URLs derived from the server's secret (never the secret itself).
    pub(crate) fn derive(secret: &[u8]) -> Self {
        #[expect(clippy::expect_used, reason = "HMAC accepts keys of any length")]
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(b"sovereign storage url key");
        Self::new(mac.finalize().into_bytes().into())
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        #[expect(clippy::expect_used, reason = "HMAC accepts keys of any length")]
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"sovereign-storage-grant\0");
        mac.update(payload);
        mac
    }

    /// `payload.mac`, both base64url.
    pub(crate) fn sign(&self, grant: Grant, expires_at: DateTime<Utc>) -> String {
        #[expect(clippy::expect_used, reason = "a grant always serialises")]
        let payload = serde_json::to_vec(&Signed {
            grant,
            e: expires_at.timestamp(),
        })
        .expect("serialisable");
        let tag = self.mac(&payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The grant of a token this key signed, if it has not expired at `now`.
    pub(crate) fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Grant, StorageError> {
        let (payload, tag) = token
            .split_once('.')
            .ok_or(StorageError::SignatureInvalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| StorageError::SignatureInvalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| StorageError::SignatureInvalid)?;
        self.mac(&payload)
            .verify_slice(&tag)
            .map_err(|_| StorageError::SignatureInvalid)?;
        let signed: Signed =
            serde_json::from_slice(&payload).map_err(|_| StorageError::SignatureInvalid)?;
        if signed.e <= now.timestamp() {
            return Err(StorageError::SignatureExpired);
        }
        Ok(signed.grant)
    }
}

impl Storage {
    /// A token for reading `key` of `bucket` until `expires_at` (the object must exist; who may
    /// share it is the caller's decision).
    pub async fn sign_read(
        &self,
        tenant: Uuid,
        bucket: &str,
        key: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<String, StorageError> {
        let info = self.head(tenant, bucket, key).await?;
        let grant = Grant::Read {
            tenant,
            bucket: bucket.to_owned(),
            key: info.key,
            sha256: info.sha256,
        };
        Ok(self.url_key.sign(grant, expires_at))
    }

    /// The tenant whose `key` of `bucket` a read token grants, and the SHA-256 of the content it
    /// was signed for (the caller serves the object only while it still has it); refused for
    /// any other key.
    pub fn verify_read(
        &self,
        token: &str,
        bucket: &str,
        key: &str,
    ) -> Result<(Uuid, String), StorageError> {
        let grant = self.url_key.verify(token, Utc::now())?;
        let key = crate::keys::object_key(key).map_err(|_| StorageError::SignatureInvalid)?;
        match grant {
            Grant::Read {
                tenant,
                bucket: b,
                key: k,
                sha256,
            } if b == bucket && k == key => Ok((tenant, sha256)),
            _ => Err(StorageError::SignatureInvalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_grants_what_it_says_until_it_expires_and_nothing_if_changed() {
        let signer = UrlKey::new([7; 32]);
        let grant = Grant::Read {
            tenant: Uuid::from_u128(1),
            bucket: "files".into(),
            key: "a/b.txt".into(),
            sha256: "ab".into(),
        };
        let now = Utc::now();
        let token = signer.sign(grant.clone(), now + chrono::Duration::seconds(60));
        assert_eq!(signer.verify(&token, now).unwrap(), grant);
        assert!(matches!(
            signer.verify(&token, now + chrono::Duration::seconds(61)),
            Err(StorageError::SignatureExpired)
        ));
        // Another key, a flipped character anywhere, a payload from another token.
        assert!(matches!(
            UrlKey::new([8; 32]).verify(&token, now),
            Err(StorageError::SignatureInvalid)
        ));
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            if changed != token {
                assert!(signer.verify(&changed, now).is_err(), "changed at {i}");
            }
        }
        let other = signer.sign(
            Grant::Read {
                tenant: Uuid::from_u128(1),
                bucket: "files".into(),
                key: "secret.txt".into(),
                sha256: "ab".into(),
            },
            now + chrono::Duration::seconds(60),
        );
        let spliced = format!(
            "{}.{}",
            other.split_once('.').unwrap().0,
            token.split_once('.').unwrap().1
        );
        assert!(signer.verify(&spliced, now).is_err());
    }
}

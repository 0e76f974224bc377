//! Secrets kept at rest (TOTP secrets): AES-256-GCM under a key derived from `SECRET_KEY`, each
//! bound to the row it belongs to (the associated data), stored as nonce ‖ ciphertext ‖ tag. A
//! copy of the table without the key reveals nothing; a sealed value moved to another row does
//! not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rand::RngCore;

use crate::AuthError;
use crate::opaque::keyed;

pub(crate) struct Sealer(LessSafeKey);

impl Sealer {
    pub(crate) fn new(secret_key: &[u8]) -> Self {
        let key = keyed(secret_key, b"sovereign data key v1", "");
        match UnboundKey::new(&AES_256_GCM, &key) {
            Ok(key) => Self(LessSafeKey::new(key)),
            Err(_) => unreachable!("a 32-byte key is an AES-256 key"),
        }
    }

    /// Seals `plaintext` for the row named `bound_to`.
    pub(crate) fn seal(&self, plaintext: &[u8], bound_to: &[u8]) -> Result<Vec<u8>, AuthError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut in_out = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(bound_to),
                &mut in_out,
            )
            .map_err(|_| AuthError::Config("cannot seal a secret".to_owned()))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// Opens what [`Sealer::seal`] sealed for the same row with the same key.
    pub(crate) fn open(&self, sealed: &[u8], bound_to: &[u8]) -> Result<Vec<u8>, AuthError> {
        let broken = || {
            AuthError::Config("a sealed secret does not open (was SECRET_KEY changed?)".to_owned())
        };
        if sealed.len() < NONCE_LEN {
            return Err(broken());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| broken())?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = self
            .0
            .open_in_place(nonce, Aad::from(bound_to), &mut in_out)
            .map_err(|_| broken())?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::Sealer;

    #[test]
    fn sealed_secrets_open_only_for_their_row_and_key() {
        let sealer = Sealer::new(b"a key of thirty-two bytes or more, for tests");
        let sealed = sealer.seal(b"JBSWY3DPEHPK3PXP", b"row-1").unwrap();
        assert!(!sealed.windows(16).any(|w| w == b"JBSWY3DPEHPK3PXP"));
        assert_eq!(sealer.open(&sealed, b"row-1").unwrap(), b"JBSWY3DPEHPK3PXP");
        assert!(sealer.open(&sealed, b"row-2").is_err(), "bound to its row");
        let other = Sealer::new(b"another key of thirty-two bytes or more");
        assert!(other.open(&sealed, b"row-1").is_err(), "bound to its key");
        let mut tampered = sealed;
        *tampered.last_mut().unwrap() ^= 1;
        assert!(sealer.open(&tampered, b"row-1").is_err());
        assert_ne!(
            sealer.seal(b"same", b"r").unwrap(),
            sealer.seal(b"same", b"r").unwrap(),
            "fresh nonces"
        );
    }
}

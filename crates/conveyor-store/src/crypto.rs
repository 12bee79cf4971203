//! Credentials encryption: ChaCha20-Poly1305 under a keyring of one active key and older keys.
//!
//! Every write uses the active key and a fresh random 96-bit nonce; the key id and nonce are
//! stored beside the ciphertext. The connection id is bound in as associated data, so a
//! ciphertext copied onto another connection fails to decrypt instead of handing that connection
//! someone else's credentials.

use std::collections::HashMap;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use conveyor_core::ConnectionId;
use rand::RngCore;

use crate::StoreError;
use crate::config::{EncryptionKey, StoreConfig};

/// Nonce length of ChaCha20-Poly1305.
pub(crate) const NONCE_LEN: usize = 12;

/// A ciphertext with what is needed to open it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Sealed {
    pub(crate) key_id: String,
    pub(crate) nonce: Vec<u8>,
    pub(crate) ciphertext: Vec<u8>,
}

/// The keys the store can use: one to write, all to read.
pub(crate) struct Keyring {
    active_id: String,
    ciphers: HashMap<String, ChaCha20Poly1305>,
}

impl Keyring {
    pub(crate) fn new(config: &StoreConfig) -> Self {
        let ciphers = std::iter::once(&config.active_key)
            .chain(config.previous_keys.iter())
            .map(|key: &EncryptionKey| {
                (
                    key.id().to_owned(),
                    ChaCha20Poly1305::new(Key::from_slice(key.bytes())),
                )
            })
            .collect();
        Keyring {
            active_id: config.active_key.id().to_owned(),
            ciphers,
        }
    }

    pub(crate) fn active_id(&self) -> &str {
        &self.active_id
    }

    fn aad(connection_id: &ConnectionId, key_id: &str) -> Vec<u8> {
        format!("conveyor-credentials:{connection_id}:{key_id}").into_bytes()
    }

    /// Encrypts `plaintext` for `connection_id` under the active key.
    pub(crate) fn seal(
        &self,
        connection_id: &ConnectionId,
        plaintext: &[u8],
    ) -> Result<Sealed, StoreError> {
        let cipher = self
            .ciphers
            .get(&self.active_id)
            .expect("the keyring is built with its active key");
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = Self::aad(connection_id, &self.active_id);
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::Crypto {
                connection_id: connection_id.to_string(),
                detail: "encryption failed".into(),
            })?;
        Ok(Sealed {
            key_id: self.active_id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Decrypts a stored ciphertext with whichever key made it.
    pub(crate) fn open(
        &self,
        connection_id: &ConnectionId,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, StoreError> {
        let crypto = |detail: String| StoreError::Crypto {
            connection_id: connection_id.to_string(),
            detail,
        };
        let cipher = self.ciphers.get(&sealed.key_id).ok_or_else(|| {
            crypto(format!(
                "encrypted with key `{}`, which is not in the keyring",
                sealed.key_id
            ))
        })?;
        if sealed.nonce.len() != NONCE_LEN {
            return Err(crypto(format!(
                "stored nonce has {} bytes, expected {NONCE_LEN}",
                sealed.nonce.len()
            )));
        }
        let aad = Self::aad(connection_id, &sealed.key_id);
        cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| crypto("authentication failed: the ciphertext was altered".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(active: u8, previous: &[u8]) -> Keyring {
        let mut config =
            StoreConfig::new(EncryptionKey::new(format!("k{active}"), [active; 32]).unwrap());
        config.previous_keys = previous
            .iter()
            .map(|&b| EncryptionKey::new(format!("k{b}"), [b; 32]).unwrap())
            .collect();
        Keyring::new(&config)
    }

    #[test]
    fn seal_and_open_round_trip_with_fresh_nonces() {
        let ring = keyring(1, &[]);
        let conn = ConnectionId::new();
        let a = ring.seal(&conn, b"secret").unwrap();
        let b = ring.seal(&conn, b"secret").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(ring.open(&conn, &a).unwrap(), b"secret");
    }

    #[test]
    fn ciphertext_is_bound_to_its_connection_and_key() {
        let ring = keyring(1, &[]);
        let sealed = ring.seal(&ConnectionId::new(), b"secret").unwrap();
        assert!(matches!(
            ring.open(&ConnectionId::new(), &sealed),
            Err(StoreError::Crypto { .. })
        ));
        let other = keyring(2, &[]);
        assert!(other.open(&ConnectionId::new(), &sealed).is_err());
    }

    #[test]
    fn previous_keys_still_open_old_ciphertexts() {
        let conn = ConnectionId::new();
        let old = keyring(1, &[]).seal(&conn, b"x").unwrap();
        let rotated = keyring(2, &[1]);
        assert_eq!(rotated.open(&conn, &old).unwrap(), b"x");
        assert_eq!(rotated.seal(&conn, b"x").unwrap().key_id, "k2");
    }
}

//! The store's settings: encryption keys and how much history to keep.
//!
//! Key material never appears in `Debug` output: [`EncryptionKey`] prints only its id, so a
//! config dumped into a log at start-up leaks nothing.

use std::fmt;

use base64::Engine as _;

use crate::StoreError;

/// One 256-bit key for encrypting credentials, with the id stored beside every ciphertext it
/// made (so a reader knows which key to use after a rotation).
#[derive(Clone)]
pub struct EncryptionKey {
    id: String,
    bytes: [u8; 32],
}

impl EncryptionKey {
    /// A key from its id and 32 raw bytes.
    ///
    /// The id must be 1 to 32 characters from `[A-Za-z0-9_-]` (it is stored in Redis and shown
    /// in logs, never the key itself).
    pub fn new(id: impl Into<String>, bytes: [u8; 32]) -> Result<Self, StoreError> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(StoreError::Invalid(format!(
                "encryption key id `{}` must be 1-32 characters of A-Z a-z 0-9 _ -",
                id.chars().take(40).collect::<String>()
            )));
        }
        Ok(EncryptionKey { id, bytes })
    }

    /// A key from its id and the standard base64 of 32 bytes (what `openssl rand -base64 32`
    /// prints).
    pub fn from_base64(id: impl Into<String>, encoded: &str) -> Result<Self, StoreError> {
        let id = id.into();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| {
                StoreError::Invalid(format!("encryption key `{id}` is not valid base64"))
            })?;
        let bytes: [u8; 32] = decoded.try_into().map_err(|bytes: Vec<u8>| {
            StoreError::Invalid(format!(
                "encryption key `{id}` must decode to 32 bytes, not {}",
                bytes.len()
            ))
        })?;
        Self::new(id, bytes)
    }

    /// Parses a list of `id:base64` pairs separated by commas, the first being the active key:
    /// `k2:BASE64,k1:BASE64` (the form of a `CONVEYOR_ENCRYPTION_KEYS` variable).
    pub fn parse_list(text: &str) -> Result<Vec<Self>, StoreError> {
        let keys = text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                let (id, encoded) = part.split_once(':').ok_or_else(|| {
                    StoreError::Invalid(
                        "each encryption key must be written `id:base64`".to_owned(),
                    )
                })?;
                Self::from_base64(id.trim(), encoded)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(StoreError::Invalid(
                "at least one encryption key is required".to_owned(),
            ));
        }
        Ok(keys)
    }

    /// The key's id (safe to show).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .field("bytes", &"***")
            .finish()
    }
}

/// Default of [`StoreConfig::run_history_len`].
pub const DEFAULT_RUN_HISTORY_LEN: usize = 200;
/// Default of [`StoreConfig::transition_history_len`].
pub const DEFAULT_TRANSITION_HISTORY_LEN: usize = 100;
/// Default of [`StoreConfig::permits_per_connection`].
pub const DEFAULT_PERMITS_PER_CONNECTION: u32 = 2;

/// Everything the store needs besides a Redis connection.
#[derive(Clone)]
pub struct StoreConfig {
    /// The key new credentials are encrypted with. Required; there is no default key.
    pub active_key: EncryptionKey,
    /// Older keys, used only to read credentials written before a rotation. Defaults to none.
    pub previous_keys: Vec<EncryptionKey>,
    /// Sync runs kept per connection; older runs are dropped when a new one is created.
    /// Defaults to 200 ([`DEFAULT_RUN_HISTORY_LEN`]); at least 1.
    pub run_history_len: usize,
    /// Status transitions kept per connection. Defaults to 100
    /// ([`DEFAULT_TRANSITION_HISTORY_LEN`]); at least 1.
    pub transition_history_len: usize,
    /// Concurrent source requests allowed per connection across the fleet, when the caller does
    /// not give its own limit. Defaults to 2 ([`DEFAULT_PERMITS_PER_CONNECTION`]).
    pub permits_per_connection: u32,
}

impl StoreConfig {
    /// A config with `active_key` and every other setting at its default.
    pub fn new(active_key: EncryptionKey) -> Self {
        StoreConfig {
            active_key,
            previous_keys: Vec::new(),
            run_history_len: DEFAULT_RUN_HISTORY_LEN,
            transition_history_len: DEFAULT_TRANSITION_HISTORY_LEN,
            permits_per_connection: DEFAULT_PERMITS_PER_CONNECTION,
        }
    }

    /// A config from a key list as parsed by [`EncryptionKey::parse_list`]: the first key is
    /// active, the rest are previous keys.
    pub fn from_keys(keys: Vec<EncryptionKey>) -> Result<Self, StoreError> {
        let mut keys = keys.into_iter();
        let active = keys
            .next()
            .ok_or_else(|| StoreError::Invalid("at least one encryption key is required".into()))?;
        let mut config = Self::new(active);
        config.previous_keys = keys.collect();
        Ok(config)
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.run_history_len == 0 || self.transition_history_len == 0 {
            return Err(StoreError::Invalid(
                "run_history_len and transition_history_len must be at least 1".into(),
            ));
        }
        if self.permits_per_connection == 0 {
            return Err(StoreError::Invalid(
                "permits_per_connection must be at least 1".into(),
            ));
        }
        let mut ids: Vec<&str> = std::iter::once(self.active_key.id())
            .chain(self.previous_keys.iter().map(EncryptionKey::id))
            .collect();
        ids.sort_unstable();
        if ids.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(StoreError::Invalid(
                "encryption key ids must be unique".into(),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written by hand so a future field holding key material cannot slip into logs through a
        // derive: keys print as their ids only.
        let previous: Vec<&str> = self.previous_keys.iter().map(EncryptionKey::id).collect();
        f.debug_struct("StoreConfig")
            .field("active_key", &self.active_key.id())
            .field("previous_keys", &previous)
            .field("run_history_len", &self.run_history_len)
            .field("transition_history_len", &self.transition_history_len)
            .field("permits_per_connection", &self.permits_per_connection)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_material() {
        let encoded = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let key = EncryptionKey::from_base64("k1", &encoded).unwrap();
        let config = StoreConfig::new(key);
        let text = format!("{config:?} {:?}", config.active_key);
        assert!(!text.contains(&encoded), "{text}");
        assert!(!text.contains("7, 7"), "{text}");
        assert!(text.contains("k1"));
    }

    #[test]
    fn key_lists_parse_with_the_first_key_active() {
        let a = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let b = base64::engine::general_purpose::STANDARD.encode([2u8; 32]);
        let keys = EncryptionKey::parse_list(&format!("new:{a}, old:{b}")).unwrap();
        let config = StoreConfig::from_keys(keys).unwrap();
        assert_eq!(config.active_key.id(), "new");
        assert_eq!(config.previous_keys[0].id(), "old");
        assert_eq!(config.previous_keys[0].bytes(), &[2u8; 32]);
    }

    #[test]
    fn bad_keys_are_refused() {
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        assert!(EncryptionKey::from_base64("k", &short).is_err());
        assert!(EncryptionKey::from_base64("k", "not base64!").is_err());
        assert!(EncryptionKey::new("bad id", [0; 32]).is_err());
        assert!(EncryptionKey::parse_list("").is_err());
        assert!(EncryptionKey::parse_list("nocolon").is_err());
        let mut config = StoreConfig::new(EncryptionKey::new("a", [0; 32]).unwrap());
        config
            .previous_keys
            .push(EncryptionKey::new("a", [1; 32]).unwrap());
        assert!(config.validate().is_err());
    }
}

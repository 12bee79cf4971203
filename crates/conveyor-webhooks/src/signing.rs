//! Standard Webhooks signatures: the secret format, signing, and a verifier.
//!
//! A signature is `v1,` followed by the base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}`
//! keyed with the bytes encoded after `whsec_`. Following the spec (rather than inventing a
//! scheme) means receivers can check our deliveries with the published verifier libraries in any
//! language. The verifier here exists for our own tests and as the reference for integrators'
//! docs; it accepts a request when any listed `v1` signature matches under any of its secrets, so
//! secret rotation never breaks a receiver.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;

use crate::WebhookError;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the event id, identical on every attempt so receivers can drop duplicates.
pub const HEADER_WEBHOOK_ID: &str = "webhook-id";
/// Header carrying the attempt's time in unix seconds.
pub const HEADER_WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying one or more space-separated `v1,<base64>` signatures.
pub const HEADER_WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// The prefix of every secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";
/// How far a `webhook-timestamp` may be from the verifier's clock: 5 minutes, as the spec says.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Key length of generated secrets, in bytes.
const GENERATED_KEY_LEN: usize = 32;
/// The spec asks for keys between 24 and 64 bytes; shorter keys are weak, longer ones are
/// rejected by some verifier libraries.
const MIN_KEY_LEN: usize = 24;
const MAX_KEY_LEN: usize = 64;
/// Signature scheme marker for HMAC-SHA256.
const SIGNATURE_VERSION: &str = "v1";

/// One signing secret (`whsec_` + base64 key).
///
/// `Debug` never shows the key; [`SigningSecret::expose`] returns the text form for the one place
/// that must show it (the API response that creates it). Serde stores the text form, so whoever
/// persists it must encrypt it at rest like any credential. Equality is for storage round trips
/// and tests; received signatures are compared in constant time by the [`Verifier`] instead.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    key: Vec<u8>,
}

impl SigningSecret {
    /// A fresh secret of 32 random bytes.
    ///
    /// The bytes come from `rand`'s thread generator, a CSPRNG (ChaCha12) seeded from the
    /// operating system and reseeded periodically.
    pub fn generate() -> Self {
        let mut key = vec![0u8; GENERATED_KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        Self { key }
    }

    /// A secret from raw key bytes (24 to 64 of them).
    pub fn from_bytes(key: &[u8]) -> Result<Self, WebhookError> {
        if key.len() < MIN_KEY_LEN {
            return Err(WebhookError::InvalidSecret {
                reason: "the key must be at least 24 bytes",
            });
        }
        if key.len() > MAX_KEY_LEN {
            return Err(WebhookError::InvalidSecret {
                reason: "the key must be at most 64 bytes",
            });
        }
        Ok(Self { key: key.to_vec() })
    }

    /// The text form, `whsec_` followed by the base64 key. Show it once, never log it.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// The `v1,<base64>` signature of one message.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self
            .mac(webhook_id, timestamp, body)
            .finalize()
            .into_bytes();
        format!("{SIGNATURE_VERSION},{}", STANDARD.encode(tag))
    }

    /// The MAC state after absorbing the signed content, ready to finalize or verify.
    fn mac(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(whsec_<redacted>)")
    }
}

impl FromStr for SigningSecret {
    type Err = WebhookError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(WebhookError::InvalidSecret {
                reason: "the secret must start with `whsec_`",
            })?;
        // Some libraries print keys without padding; accept both forms.
        let key =
            STANDARD_PAD_INDIFFERENT
                .decode(encoded)
                .map_err(|_| WebhookError::InvalidSecret {
                    reason: "the part after `whsec_` must be base64",
                })?;
        Self::from_bytes(&key)
    }
}

impl Serialize for SigningSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.expose())
    }
}

impl<'de> Deserialize<'de> for SigningSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The three header values of one signed delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `webhook-id`: the event id.
    pub webhook_id: String,
    /// `webhook-timestamp`: unix seconds of the attempt.
    pub webhook_timestamp: i64,
    /// `webhook-signature`: one `v1,<base64>` per secret, space separated.
    pub webhook_signature: String,
}

/// Signs one message with every given secret (current first, then any still-valid previous one).
pub fn sign<'a>(
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
    secrets: impl IntoIterator<Item = &'a SigningSecret>,
) -> SignatureHeaders {
    let webhook_signature = secrets
        .into_iter()
        .map(|secret| secret.sign(webhook_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ");
    SignatureHeaders {
        webhook_id: webhook_id.to_owned(),
        webhook_timestamp: timestamp,
        webhook_signature,
    }
}

/// Checks Standard Webhooks signatures, as a receiver would.
#[derive(Debug, Clone)]
pub struct Verifier {
    secrets: Vec<SigningSecret>,
    tolerance: Duration,
}

impl Verifier {
    /// A verifier accepting signatures made with any of `secrets`, within the default 5-minute
    /// tolerance.
    pub fn new(secrets: impl IntoIterator<Item = SigningSecret>) -> Self {
        Self {
            secrets: secrets.into_iter().collect(),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Changes how far the timestamp may be from the verifier's clock.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Verifies a received request against the current clock.
    pub fn verify(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<(), WebhookError> {
        let header = |name: &'static str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .ok_or(WebhookError::MissingHeader { name })
        };
        self.verify_at(
            header(HEADER_WEBHOOK_ID)?,
            header(HEADER_WEBHOOK_TIMESTAMP)?,
            header(HEADER_WEBHOOK_SIGNATURE)?,
            body,
            chrono::Utc::now().timestamp(),
        )
    }

    /// Verifies the three header values and the body as if the clock read `now` (unix seconds).
    pub fn verify_at(
        &self,
        webhook_id: &str,
        webhook_timestamp: &str,
        webhook_signature: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), WebhookError> {
        let timestamp: i64 =
            webhook_timestamp
                .trim()
                .parse()
                .map_err(|_| WebhookError::BadTimestamp {
                    reason: "is not unix seconds",
                })?;
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        if timestamp < now.saturating_sub(tolerance) {
            return Err(WebhookError::BadTimestamp {
                reason: "is too old",
            });
        }
        if timestamp > now.saturating_add(tolerance) {
            return Err(WebhookError::BadTimestamp {
                reason: "is too far in the future",
            });
        }
        let candidates: Vec<Vec<u8>> = webhook_signature
            .split_ascii_whitespace()
            .filter_map(|entry| entry.split_once(','))
            .filter(|(version, _)| *version == SIGNATURE_VERSION)
            .filter_map(|(_, encoded)| STANDARD.decode(encoded).ok())
            .collect();
        for secret in &self.secrets {
            let mac = secret.mac(webhook_id, timestamp, body);
            // `verify_slice` compares in constant time, so response timing does not leak how
            // many leading bytes of a forged signature were right.
            if candidates
                .iter()
                .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
            {
                return Ok(());
            }
        }
        Err(WebhookError::NoMatchingSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn spec_secret() -> SigningSecret {
        SPEC_SECRET.parse().unwrap()
    }

    #[test]
    fn signs_the_published_test_vector() {
        let secret = spec_secret();
        assert_eq!(
            secret.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.as_bytes()),
            SPEC_SIGNATURE
        );
        let headers = sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.as_bytes(), [&secret]);
        assert_eq!(headers.webhook_signature, SPEC_SIGNATURE);
        assert_eq!(headers.webhook_id, SPEC_ID);
        assert_eq!(headers.webhook_timestamp, SPEC_TIMESTAMP);
    }

    #[test]
    fn verifies_the_published_test_vector_and_rejects_tampering() {
        let verifier = Verifier::new([spec_secret()]);
        let body = SPEC_BODY.as_bytes();
        let ts = SPEC_TIMESTAMP.to_string();
        verifier
            .verify_at(SPEC_ID, &ts, SPEC_SIGNATURE, body, SPEC_TIMESTAMP + 10)
            .unwrap();

        let tampered = br#"{"test": 2432232315}"#;
        assert_eq!(
            verifier.verify_at(SPEC_ID, &ts, SPEC_SIGNATURE, tampered, SPEC_TIMESTAMP),
            Err(WebhookError::NoMatchingSignature)
        );
        assert_eq!(
            verifier.verify_at("msg_other", &ts, SPEC_SIGNATURE, body, SPEC_TIMESTAMP),
            Err(WebhookError::NoMatchingSignature)
        );
        // The timestamp is signed too: moving it breaks the signature.
        let moved = (SPEC_TIMESTAMP + 1).to_string();
        assert_eq!(
            verifier.verify_at(SPEC_ID, &moved, SPEC_SIGNATURE, body, SPEC_TIMESTAMP),
            Err(WebhookError::NoMatchingSignature)
        );
        let other = Verifier::new([SigningSecret::generate()]);
        assert_eq!(
            other.verify_at(SPEC_ID, &ts, SPEC_SIGNATURE, body, SPEC_TIMESTAMP),
            Err(WebhookError::NoMatchingSignature)
        );
    }

    #[test]
    fn tolerance_window_is_five_minutes_both_ways() {
        let verifier = Verifier::new([spec_secret()]);
        let body = SPEC_BODY.as_bytes();
        let ts = SPEC_TIMESTAMP.to_string();
        let check = |now| verifier.verify_at(SPEC_ID, &ts, SPEC_SIGNATURE, body, now);
        assert_eq!(check(SPEC_TIMESTAMP + 300), Ok(()));
        assert_eq!(check(SPEC_TIMESTAMP - 300), Ok(()));
        assert!(matches!(
            check(SPEC_TIMESTAMP + 301),
            Err(WebhookError::BadTimestamp {
                reason: "is too old"
            })
        ));
        assert!(matches!(
            check(SPEC_TIMESTAMP - 301),
            Err(WebhookError::BadTimestamp { .. })
        ));
        assert!(matches!(
            verifier.verify_at(SPEC_ID, "yesterday", SPEC_SIGNATURE, body, SPEC_TIMESTAMP),
            Err(WebhookError::BadTimestamp { .. })
        ));
    }

    #[test]
    fn any_listed_signature_may_match() {
        let verifier = Verifier::new([spec_secret()]);
        let ts = SPEC_TIMESTAMP.to_string();
        let header = format!("v2,AAAA v1,bm90IGEgc2lnbmF0dXJl v1,%%% garbage {SPEC_SIGNATURE}");
        verifier
            .verify_at(SPEC_ID, &ts, &header, SPEC_BODY.as_bytes(), SPEC_TIMESTAMP)
            .unwrap();
        // The same bytes under another version tag are not accepted.
        let v2 = SPEC_SIGNATURE.replacen("v1,", "v2,", 1);
        assert_eq!(
            verifier.verify_at(SPEC_ID, &ts, &v2, SPEC_BODY.as_bytes(), SPEC_TIMESTAMP),
            Err(WebhookError::NoMatchingSignature)
        );
    }

    #[test]
    fn missing_headers_are_named() {
        let verifier = Verifier::new([spec_secret()]);
        let mut headers = http::HeaderMap::new();
        headers.insert(HEADER_WEBHOOK_ID, SPEC_ID.parse().unwrap());
        headers.insert(HEADER_WEBHOOK_SIGNATURE, SPEC_SIGNATURE.parse().unwrap());
        assert_eq!(
            verifier.verify(&headers, SPEC_BODY.as_bytes()),
            Err(WebhookError::MissingHeader {
                name: HEADER_WEBHOOK_TIMESTAMP
            })
        );
    }

    #[test]
    fn generated_secrets_are_32_random_bytes_and_round_trip() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        assert_ne!(a, b);
        let text = a.expose();
        assert!(text.starts_with("whsec_"));
        let key = STANDARD.decode(&text["whsec_".len()..]).unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(text.parse::<SigningSecret>().unwrap(), a);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<SigningSecret>(&json).unwrap(), a);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let secret = spec_secret();
        let shown = format!("{secret:?} {:?}", Verifier::new([secret.clone()]));
        assert!(
            !shown.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "{shown}"
        );
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn malformed_secrets_are_rejected_without_echoing_them() {
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_",
            "whsec_not base64!!",
            "whsec_c2hvcnQ=",
            &format!("whsec_{}", STANDARD.encode([7u8; 65])),
        ] {
            let err = bad.parse::<SigningSecret>().unwrap_err();
            assert!(matches!(err, WebhookError::InvalidSecret { .. }), "{bad}");
            assert!(!err.to_string().contains("c2hvcnQ"), "{err}");
        }
        // Unpadded base64 is accepted, as the reference libraries do.
        let unpadded = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode([1u8; 31])
        );
        assert!(unpadded.parse::<SigningSecret>().is_ok());
    }
}

//! An endpoint's signing secrets across a rotation.
//!
//! Rotating a secret must not break a receiver that has not switched yet, so for 24 hours after
//! a rotation every delivery is signed with both the new and the old secret (the signature header
//! lists both) and the receiver accepts whichever it knows. After that the old secret is dropped.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::SigningSecret;
use crate::signing::{SignatureHeaders, Verifier, sign};

/// How long a replaced secret keeps signing after a rotation: 24 hours.
pub const ROTATION_OVERLAP: TimeDelta = TimeDelta::hours(24);

/// The current secret and, during a rotation, the previous one with its expiry.
///
/// `Debug` redacts both keys; serde writes the secrets in their `whsec_` text form, so storage
/// must encrypt this value at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecrets {
    /// Signs every delivery.
    pub current: SigningSecret,
    /// The secret replaced by the last rotation, signing too until it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousSecret>,
}

/// A replaced secret that still signs until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    /// The replaced secret.
    pub secret: SigningSecret,
    /// When it stops signing.
    pub expires_at: DateTime<Utc>,
}

impl SigningSecrets {
    /// Secrets with only `current`.
    pub fn new(current: SigningSecret) -> Self {
        Self {
            current,
            previous: None,
        }
    }

    /// Secrets with a freshly generated current secret.
    pub fn generate() -> Self {
        Self::new(SigningSecret::generate())
    }

    /// Makes `new_secret` current; the old current secret keeps signing for
    /// [`ROTATION_OVERLAP`] from `now`.
    ///
    /// Only one previous secret is kept: rotating twice within 24 hours drops the oldest, as a
    /// second rotation means the operator no longer trusts it.
    pub fn rotate_to(&mut self, new_secret: SigningSecret, now: DateTime<Utc>) {
        let old = std::mem::replace(&mut self.current, new_secret);
        self.previous = Some(PreviousSecret {
            secret: old,
            expires_at: now + ROTATION_OVERLAP,
        });
    }

    /// Rotates to a freshly generated secret and returns it (to show it once).
    pub fn rotate(&mut self, now: DateTime<Utc>) -> &SigningSecret {
        self.rotate_to(SigningSecret::generate(), now);
        &self.current
    }

    /// The secrets that sign at `now`: the current one first, then the previous one until it
    /// expires.
    pub fn active(&self, now: DateTime<Utc>) -> impl Iterator<Item = &SigningSecret> {
        let previous = self
            .previous
            .as_ref()
            .filter(|previous| now < previous.expires_at)
            .map(|previous| &previous.secret);
        std::iter::once(&self.current).chain(previous)
    }

    /// Forgets an expired previous secret; returns whether anything changed (so the caller knows
    /// to write the value back).
    pub fn prune(&mut self, now: DateTime<Utc>) -> bool {
        let expired = self
            .previous
            .as_ref()
            .is_some_and(|previous| now >= previous.expires_at);
        if expired {
            self.previous = None;
        }
        expired
    }

    /// Signs one delivery attempt made at `now` with every active secret.
    pub fn sign(&self, webhook_id: &str, now: DateTime<Utc>, body: &[u8]) -> SignatureHeaders {
        sign(webhook_id, now.timestamp(), body, self.active(now))
    }

    /// A verifier that accepts what these secrets sign at `now`.
    pub fn verifier(&self, now: DateTime<Utc>) -> Verifier {
        Verifier::new(self.active(now).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn rotation_signs_with_both_secrets_until_expiry() {
        let start = at("2026-11-23T08:00:00Z");
        let mut secrets = SigningSecrets::generate();
        let old = secrets.current.clone();
        let new = secrets.rotate(start).clone();
        assert_ne!(old, new);

        let body = br#"{"hello":"world"}"#;
        let now = start + TimeDelta::hours(23);
        let headers = secrets.sign("evt_1", now, body);
        let signatures: Vec<_> = headers.webhook_signature.split(' ').collect();
        assert_eq!(signatures.len(), 2, "{signatures:?}");
        assert_eq!(
            signatures,
            [
                new.sign("evt_1", now.timestamp(), body),
                old.sign("evt_1", now.timestamp(), body)
            ]
        );
        // A receiver knowing only one of the two secrets accepts the delivery either way.
        let ts = headers.webhook_timestamp.to_string();
        for secret in [&old, &new] {
            Verifier::new([secret.clone()])
                .verify_at(
                    "evt_1",
                    &ts,
                    &headers.webhook_signature,
                    body,
                    now.timestamp(),
                )
                .unwrap();
        }

        // After 24 hours only the new secret signs; a receiver still on the old one fails.
        let later = start + ROTATION_OVERLAP;
        let headers = secrets.sign("evt_1", later, body);
        assert_eq!(headers.webhook_signature.split(' ').count(), 1);
        let ts = headers.webhook_timestamp.to_string();
        assert_eq!(
            Verifier::new([old.clone()]).verify_at(
                "evt_1",
                &ts,
                &headers.webhook_signature,
                body,
                later.timestamp()
            ),
            Err(crate::WebhookError::NoMatchingSignature)
        );
        Verifier::new([new.clone()])
            .verify_at(
                "evt_1",
                &ts,
                &headers.webhook_signature,
                body,
                later.timestamp(),
            )
            .unwrap();

        assert!(!secrets.prune(start + TimeDelta::hours(1)));
        assert!(secrets.previous.is_some());
        assert!(secrets.prune(later));
        assert!(secrets.previous.is_none());
        assert_eq!(secrets.current, new);
    }

    #[test]
    fn stores_as_text_and_debug_redacts() {
        let mut secrets = SigningSecrets::generate();
        let json = serde_json::to_value(&secrets).unwrap();
        assert!(json.get("previous").is_none());
        assert_eq!(json["current"], secrets.current.expose());
        assert_eq!(
            serde_json::from_value::<SigningSecrets>(json).unwrap(),
            secrets
        );

        secrets.rotate(at("2026-11-23T08:00:00Z"));
        let json = serde_json::to_value(&secrets).unwrap();
        assert_eq!(json["previous"]["expires_at"], "2026-11-24T08:00:00Z");
        assert_eq!(
            serde_json::from_value::<SigningSecrets>(json).unwrap(),
            secrets
        );

        let shown = format!("{secrets:?}");
        let current = secrets.current.expose();
        assert!(!shown.contains(&current["whsec_".len()..]), "{shown}");
    }
}

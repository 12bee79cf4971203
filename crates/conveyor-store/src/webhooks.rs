//! Webhook endpoints of a connection and their signing secrets, encrypted at rest.
//!
//! An endpoint's configuration (URL, enabled flag, subscribed event types) and its secrets live
//! in two hashes of the connection, keyed by endpoint id, so every reader of an endpoint gets a
//! [`WebhookEndpoint`], which holds no secret, and only [`Store::webhook_secrets`] decrypts.
//!
//! Secrets are sealed with the same keyring and cipher as connection credentials (see
//! `crypto`), so one key rotation procedure covers both. The keyring binds a ciphertext to its
//! connection; the plaintext additionally names its endpoint and is checked on opening, so a
//! ciphertext copied onto another endpoint of the same connection is refused rather than
//! signing for the wrong endpoint.
//!
//! Updates are optimistic like connections: the caller sends back the `version` it read.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use conveyor_core::{ConnectionId, EndpointId, EventType};
use conveyor_webhooks::{SigningSecret, SigningSecrets};
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};

use crate::crypto::Sealed;
use crate::{Store, StoreError};

/// The most endpoints one connection may have: each event fans out to every endpoint, so the
/// bound keeps one event's work bounded too.
pub const MAX_ENDPOINTS_PER_CONNECTION: usize = 20;

/// How many times a read-modify-write of an endpoint is retried when another writer got there
/// first (only automatic updates, such as disabling after a 410, retry; API updates report the
/// conflict).
const CAS_ROUNDS: usize = 5;

pub(crate) fn endpoints_key(connection_id: &ConnectionId) -> String {
    format!("conveyor:{{{connection_id}}}:webhooks")
}

pub(crate) fn secrets_key(connection_id: &ConnectionId) -> String {
    format!("conveyor:{{{connection_id}}}:webhooks:secrets")
}

/// One webhook endpoint of a connection, as every reader sees it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    /// The endpoint's id.
    pub id: EndpointId,
    /// The connection whose events it receives.
    pub connection_id: ConnectionId,
    /// Where events are POSTed (checked against the URL policy when configured and at every
    /// delivery).
    pub url: String,
    /// Disabled endpoints receive nothing; a receiver answering 410 Gone disables its endpoint.
    pub enabled: bool,
    /// The event types it receives.
    pub event_types: Vec<EventType>,
    /// A note for humans.
    #[serde(default)]
    pub description: String,
    /// Why the endpoint was disabled automatically, if it was.
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its configuration last changed.
    pub updated_at: DateTime<Utc>,
    /// When its secret was last rotated.
    #[serde(default)]
    pub secret_rotated_at: Option<DateTime<Utc>>,
    /// Increases with every update; send back the version read to update.
    #[serde(default)]
    pub version: u64,
}

impl WebhookEndpoint {
    /// A new enabled endpoint with a fresh id.
    pub fn new(connection_id: ConnectionId, url: String, event_types: Vec<EventType>) -> Self {
        let now = Utc::now();
        WebhookEndpoint {
            id: EndpointId::new(),
            connection_id,
            url,
            enabled: true,
            event_types,
            description: String::new(),
            disabled_reason: None,
            created_at: now,
            updated_at: now,
            secret_rotated_at: None,
            version: 0,
        }
    }

    /// Whether an event of `event_type` goes to this endpoint now.
    pub fn wants(&self, event_type: EventType) -> bool {
        self.enabled && self.event_types.contains(&event_type)
    }
}

/// The plaintext sealed under the keyring: the secrets and the endpoint they belong to.
#[derive(Serialize, Deserialize)]
struct SecretsPlaintext {
    endpoint_id: EndpointId,
    secrets: SigningSecrets,
}

/// A sealed value as one hash field: `key_id:nonce:ciphertext`, the binary parts in base64.
fn encode_sealed(sealed: &Sealed) -> String {
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    format!(
        "{}:{}:{}",
        sealed.key_id,
        b64.encode(&sealed.nonce),
        b64.encode(&sealed.ciphertext)
    )
}

fn decode_sealed(key: &str, text: &str) -> Result<Sealed, StoreError> {
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    let mut parts = text.splitn(3, ':');
    let (Some(key_id), Some(nonce), Some(ciphertext)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(StoreError::corrupt(
            key,
            "sealed secret is not key:nonce:ciphertext",
        ));
    };
    let decode = |part: &str| {
        b64.decode(part)
            .map_err(|_| StoreError::corrupt(key, "sealed secret is not base64"))
    };
    Ok(Sealed {
        key_id: key_id.to_owned(),
        nonce: decode(nonce)?,
        ciphertext: decode(ciphertext)?,
    })
}

static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
        if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return -1 end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
        return 1
        ",
    )
});

/// Replaces an endpoint's JSON if its stored version is the one the caller read.
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local current = redis.call('HGET', KEYS[1], ARGV[1])
        if not current then return {-1, 0} end
        local version = cjson.decode(current)['version'] or 0
        if version ~= tonumber(ARGV[2]) then return {0, version} end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
        return {1, 0}
        ",
    )
});

/// Replaces sealed secrets only if they are still the ones read (a concurrent rotation wins).
static REPLACE_SECRETS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
        if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
        redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
        return 1
        ",
    )
});

impl Store {
    /// Stores a new endpoint with its secrets; the stored copy (returned) has version 1.
    ///
    /// Fails with `Conflict` if the id exists or the connection already has
    /// [`MAX_ENDPOINTS_PER_CONNECTION`] endpoints.
    pub async fn create_webhook_endpoint(
        &self,
        endpoint: &WebhookEndpoint,
        secrets: &SigningSecrets,
    ) -> Result<WebhookEndpoint, StoreError> {
        let mut stored = endpoint.clone();
        stored.version = 1;
        let json = endpoint_json(&stored)?;
        let sealed = self.seal_webhook_secrets(&stored.connection_id, &stored.id, secrets)?;
        let created: i64 = CREATE
            .key(endpoints_key(&stored.connection_id))
            .key(secrets_key(&stored.connection_id))
            .arg(stored.id.to_string())
            .arg(json)
            .arg(encode_sealed(&sealed))
            .arg(MAX_ENDPOINTS_PER_CONNECTION)
            .invoke_async(&mut self.redis())
            .await?;
        match created {
            1 => Ok(stored),
            0 => Err(StoreError::Conflict {
                what: "webhook endpoint",
                id: stored.id.to_string(),
                detail: "an endpoint with this id already exists".into(),
            }),
            _ => Err(StoreError::Conflict {
                what: "connection",
                id: stored.connection_id.to_string(),
                detail: format!(
                    "a connection has at most {MAX_ENDPOINTS_PER_CONNECTION} webhook endpoints"
                ),
            }),
        }
    }

    /// One endpoint of a connection.
    pub async fn get_webhook_endpoint(
        &self,
        connection_id: &ConnectionId,
        endpoint_id: &EndpointId,
    ) -> Result<WebhookEndpoint, StoreError> {
        let key = endpoints_key(connection_id);
        let json: Option<String> = self.redis().hget(&key, endpoint_id.to_string()).await?;
        let json = json.ok_or_else(|| StoreError::not_found("webhook endpoint", endpoint_id))?;
        serde_json::from_str(&json).map_err(|err| StoreError::corrupt(key, err))
    }

    /// Every endpoint of a connection, oldest first (at most
    /// [`MAX_ENDPOINTS_PER_CONNECTION`]).
    pub async fn list_webhook_endpoints(
        &self,
        connection_id: &ConnectionId,
    ) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let key = endpoints_key(connection_id);
        let all: HashMap<String, String> = self.redis().hgetall(&key).await?;
        let mut endpoints = all
            .values()
            .map(|json| {
                serde_json::from_str::<WebhookEndpoint>(json)
                    .map_err(|err| StoreError::corrupt(&key, err))
            })
            .collect::<Result<Vec<_>, _>>()?;
        endpoints.sort_by_key(|endpoint| endpoint.id);
        Ok(endpoints)
    }

    /// Replaces an endpoint's configuration. `endpoint.version` must be the version read; the
    /// stored copy (returned) has the next version and a fresh `updated_at`.
    ///
    /// Fails with `Conflict` on a stale version, `NotFound` if it is gone.
    pub async fn update_webhook_endpoint(
        &self,
        endpoint: &WebhookEndpoint,
    ) -> Result<WebhookEndpoint, StoreError> {
        let mut stored = endpoint.clone();
        stored.version = endpoint.version + 1;
        stored.updated_at = Utc::now();
        let (outcome, current): (i64, u64) = UPDATE
            .key(endpoints_key(&stored.connection_id))
            .arg(stored.id.to_string())
            .arg(endpoint.version)
            .arg(endpoint_json(&stored)?)
            .invoke_async(&mut self.redis())
            .await?;
        match outcome {
            1 => Ok(stored),
            -1 => Err(StoreError::not_found("webhook endpoint", stored.id)),
            _ => Err(StoreError::Conflict {
                what: "webhook endpoint",
                id: stored.id.to_string(),
                detail: format!(
                    "version {} is stale; the current version is {current}",
                    endpoint.version
                ),
            }),
        }
    }

    /// Disables an endpoint with a reason (a receiver answered 410 Gone), whatever its version;
    /// returns the stored copy. Disabling a disabled endpoint changes nothing.
    pub async fn disable_webhook_endpoint(
        &self,
        connection_id: &ConnectionId,
        endpoint_id: &EndpointId,
        reason: &str,
    ) -> Result<WebhookEndpoint, StoreError> {
        let mut last_conflict = None;
        for _ in 0..CAS_ROUNDS {
            let mut endpoint = self
                .get_webhook_endpoint(connection_id, endpoint_id)
                .await?;
            if !endpoint.enabled {
                return Ok(endpoint);
            }
            endpoint.enabled = false;
            endpoint.disabled_reason = Some(reason.to_owned());
            match self.update_webhook_endpoint(&endpoint).await {
                Err(conflict @ StoreError::Conflict { .. }) => last_conflict = Some(conflict),
                other => return other,
            }
        }
        Err(last_conflict.unwrap_or_else(|| StoreError::Conflict {
            what: "webhook endpoint",
            id: endpoint_id.to_string(),
            detail: "kept changing while being disabled".into(),
        }))
    }

    /// Deletes an endpoint and its secrets. Its delivery log stays until it expires.
    pub async fn delete_webhook_endpoint(
        &self,
        connection_id: &ConnectionId,
        endpoint_id: &EndpointId,
    ) -> Result<(), StoreError> {
        let (removed, _): (i64, i64) = redis::pipe()
            .atomic()
            .hdel(endpoints_key(connection_id), endpoint_id.to_string())
            .hdel(secrets_key(connection_id), endpoint_id.to_string())
            .query_async(&mut self.redis())
            .await?;
        if removed == 0 {
            return Err(StoreError::not_found("webhook endpoint", endpoint_id));
        }
        Ok(())
    }

    /// Deletes every endpoint and secret of a connection (call it when deleting the
    /// connection; the delivery log expires by itself).
    pub async fn delete_webhooks_of_connection(
        &self,
        connection_id: &ConnectionId,
    ) -> Result<(), StoreError> {
        redis::cmd("UNLINK")
            .arg(endpoints_key(connection_id))
            .arg(secrets_key(connection_id))
            .query_async::<()>(&mut self.redis())
            .await?;
        Ok(())
    }

    /// Decrypts an endpoint's signing secrets.
    ///
    /// Fails with `NotFound` if the endpoint has none, `Crypto` if the key that sealed them is
    /// not configured, the ciphertext was altered, or it belongs to another endpoint.
    pub async fn webhook_secrets(
        &self,
        connection_id: &ConnectionId,
        endpoint_id: &EndpointId,
    ) -> Result<SigningSecrets, StoreError> {
        let (secrets, _) = self
            .read_webhook_secrets(connection_id, endpoint_id)
            .await?;
        Ok(secrets)
    }

    /// Rotates an endpoint's secret at `now`: a fresh secret becomes current, the old one keeps
    /// signing for 24 hours (an older previous secret is dropped). Returns the new secret, to
    /// be shown once.
    ///
    /// Fails with `Conflict` if another rotation of the same endpoint won the race.
    pub async fn rotate_webhook_secret(
        &self,
        connection_id: &ConnectionId,
        endpoint_id: &EndpointId,
        now: DateTime<Utc>,
    ) -> Result<SigningSecret, StoreError> {
        let (mut secrets, stored) = self
            .read_webhook_secrets(connection_id, endpoint_id)
            .await?;
        let new_secret = secrets.rotate(now).clone();
        let sealed = self.seal_webhook_secrets(connection_id, endpoint_id, &secrets)?;
        let replaced: i64 = REPLACE_SECRETS
            .key(endpoints_key(connection_id))
            .key(secrets_key(connection_id))
            .arg(endpoint_id.to_string())
            .arg(stored)
            .arg(encode_sealed(&sealed))
            .invoke_async(&mut self.redis())
            .await?;
        match replaced {
            1 => {}
            -1 => return Err(StoreError::not_found("webhook endpoint", endpoint_id)),
            _ => {
                return Err(StoreError::Conflict {
                    what: "webhook endpoint",
                    id: endpoint_id.to_string(),
                    detail: "its secret was rotated concurrently; read it again".into(),
                });
            }
        }
        // The rotation time is shown with the endpoint; losing this write (a concurrent update)
        // loses only that note, never the secret, so one attempt is enough.
        if let Ok(mut endpoint) = self.get_webhook_endpoint(connection_id, endpoint_id).await {
            endpoint.secret_rotated_at = Some(now);
            if let Err(err) = self.update_webhook_endpoint(&endpoint).await {
                tracing::debug!(endpoint_id = %endpoint_id, error = %err, "rotation time not recorded");
            }
        }
        Ok(new_secret)
    }

    /// The decrypted secrets and the stored sealed text (for compare-and-set).
    async fn read_webhook_secrets(
        &self,
        connection_id: &ConnectionId,
        endpoint_id: &EndpointId,
    ) -> Result<(SigningSecrets, String), StoreError> {
        let key = secrets_key(connection_id);
        let stored: Option<String> = self.redis().hget(&key, endpoint_id.to_string()).await?;
        let stored = stored
            .ok_or_else(|| StoreError::not_found("secrets of webhook endpoint", endpoint_id))?;
        let sealed = decode_sealed(&key, &stored)?;
        let plaintext = self.keyring.open(connection_id, &sealed)?;
        let crypto = |detail: String| StoreError::Crypto {
            connection_id: connection_id.to_string(),
            detail,
        };
        let opened: SecretsPlaintext = serde_json::from_slice(&plaintext).map_err(|err| {
            crypto(format!(
                "decrypted webhook secrets are not valid JSON: {err}"
            ))
        })?;
        if opened.endpoint_id != *endpoint_id {
            return Err(crypto(format!(
                "the secrets stored for endpoint `{endpoint_id}` belong to `{}`",
                opened.endpoint_id
            )));
        }
        Ok((opened.secrets, stored))
    }

    fn seal_webhook_secrets(
        &self,
        connection_id: &ConnectionId,
        endpoint_id: &EndpointId,
        secrets: &SigningSecrets,
    ) -> Result<Sealed, StoreError> {
        let plaintext = serde_json::to_vec(&SecretsPlaintext {
            endpoint_id: *endpoint_id,
            secrets: secrets.clone(),
        })
        .map_err(|err| StoreError::Invalid(format!("webhook secrets: {err}")))?;
        self.keyring.seal(connection_id, &plaintext)
    }
}

fn endpoint_json(endpoint: &WebhookEndpoint) -> Result<String, StoreError> {
    serde_json::to_string(endpoint)
        .map_err(|err| StoreError::Invalid(format!("webhook endpoint: {err}")))
}

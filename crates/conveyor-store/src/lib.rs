//! Everything Conveyor keeps in Redis except the job queue (which is `conveyor-queue`'s).
//!
//! One [`Store`] handle, cheap to clone, holds a self-reconnecting Redis
//! [`ConnectionManager`] and the credentials keyring. Its methods
//! are grouped by concern, one module each:
//!
//! | module | what it keeps |
//! |---|---|
//! | [`connections`] | connections, their encrypted credentials, per-tenant and global indexes |
//! | [`progress`] | the per-entity cursor and the per-run resume checkpoint |
//! | [`runs`] | sync run history, bounded per connection |
//! | [`status`] | connection status and its transitions (which emit events atomically) |
//! | [`records`] | the synced records: page upserts, reads, change feed, deletion sweep |
//! | [`outbox`] | the per-connection event outbox the webhook dispatcher drains |
//! | [`api_keys`] | tenants and API keys (hashed secrets) |
//! | [`permits`] | the fleet-wide per-connection request semaphore |
//! | [`webhooks`] | webhook endpoints of a connection and their encrypted signing secrets |
//! | [`deliveries`] | the webhook delivery log: deliveries, their attempts, list indexes |
//! | [`schedule`] | when each entity is due, claimed once fleet-wide; offline probes |
//!
//! # Key map
//!
//! Every key starts with `conveyor:`. Keys of one connection carry its id as the Redis Cluster
//! hash tag (`{conn_...}`), so they share one slot and one script may touch several of them.
//! Global indexes have their own keys and are only written by single-key commands. Times are
//! epoch milliseconds.
//!
//! | key | type | content |
//! |---|---|---|
//! | `conveyor:{conn}:connection` | hash | `json` (the [`Connection`](conveyor_core::Connection)), `version`, `tenant_id` |
//! | `conveyor:{conn}:credentials` | hash | `key_id`, `nonce`, `ciphertext` (ChaCha20-Poly1305) |
//! | `conveyor:{conn}:cursors` | hash | entity → cursor ms |
//! | `conveyor:{conn}:checkpoints` | hash | `entity:sync_id` → checkpoint JSON |
//! | `conveyor:{conn}:runs` | zset (lex) | sync ids, newest last |
//! | `conveyor:{conn}:run:{sync_id}` | hash | one run's fields |
//! | `conveyor:{conn}:status` | hash | status, since, last success/error, failures, next attempt, `data_as_of:{entity}` |
//! | `conveyor:{conn}:status:transitions` | list | transition JSON, newest first, trimmed |
//! | `conveyor:{conn}:counters` | hash | `event_sequence`, `records_sequence:{entity}` |
//! | `conveyor:{conn}:events` | stream | the outbox; consumer group `dispatchers` |
//! | `conveyor:{conn}:permits` | zset | permit holder → expiry ms |
//! | `conveyor:{conn}:webhooks` | hash | endpoint id → endpoint JSON |
//! | `conveyor:{conn}:webhooks:secrets` | hash | endpoint id → `key_id:nonce:ciphertext` (signing secrets, ChaCha20-Poly1305) |
//! | `conveyor:{conn}:delivery:{dlv}` | hash | one delivery: event JSON, endpoint, state, attempt counts, last status/error, job id (expires) |
//! | `conveyor:{conn}:delivery:{dlv}:attempts` | list | attempt JSON, oldest first, newest 50 kept (expires) |
//! | `conveyor:{conn}:deliveries` | zset (lex) | delivery ids, by event time |
//! | `conveyor:{conn}:deliveries:endpoint:{whe}` | zset (lex) | one endpoint's delivery ids |
//! | `conveyor:{conn}:deliveries:event:{evt}` | zset (lex) | one event's delivery ids |
//! | `conveyor:{conn}:schedule` | hash | `due:{entity}`, `interval:{entity}` ms, `revision`, `probe_at`, `probe_failures`, `probes`, `blocked_credentials` (digest) |
//! | `conveyor:{conn}:records:{entity}` | hash | external key → record JSON as the source gave it |
//! | `conveyor:{conn}:records:{entity}:meta` | hash | external key → content hash, deleted flag, source ms, last full run that saw it, change position (joined by a bar) |
//! | `conveyor:{conn}:records:{entity}:changes` | zset (lex) | change positions `synced_ms:seq:key` |
//! | `conveyor:connections` | zset (lex) | every connection id (the scheduler iterates it) |
//! | `conveyor:tenant:{ten}:connections` | zset (lex) | the tenant's connection ids |
//! | `conveyor:schedule:due` | zset | connection id → when its schedule needs a look (ms) |
//! | `conveyor:outbox:ready` | zset | connections with undrained events, scored by last append ms |
//! | `conveyor:sync_run:{sync_id}` | string | the connection id of a run (dropped with the run) |
//! | `conveyor:tenants` | zset (lex) | every tenant id |
//! | `conveyor:tenant:{ten}` | string | tenant JSON |
//! | `conveyor:tenant:{ten}:api_keys` | zset (lex) | the tenant's API key ids |
//! | `conveyor:api_key:{key}` | hash | `json` (the key's public record), `secret_hash` |
//! | `conveyor:api_key_hash:{sha256 hex}` | string | the key id a secret belongs to |
//!
//! Writes that span a connection's keys and a global index (creating or deleting a connection)
//! are two steps, data first on create and indexes first on delete; readers of an index skip ids
//! whose data is missing, so a crash between the steps leaves nothing visible half-made.
//!
//! # Encryption keys and rotation
//!
//! Credentials are encrypted with ChaCha20-Poly1305 under [`StoreConfig::active_key`]; each
//! ciphertext is stored with the id of the key that made it and a random nonce, and is bound to
//! its connection id. To rotate:
//!
//! 1. Generate a key (`openssl rand -base64 32`) with a new id, and deploy every process with the
//!    new key first and the old one after it (`CONVEYOR_ENCRYPTION_KEYS=k2:NEW,k1:OLD`, parsed by
//!    [`EncryptionKey::parse_list`]). From then on new writes use `k2`; `k1` still reads.
//! 2. Run [`Store::reencrypt_all`] once (`conveyorctl reencrypt`, with the same keys): it
//!    rewrites every credential not under the active key, skipping any that a concurrent write
//!    already replaced.
//! 3. When it reports nothing left under `k1`, drop `k1` from the configuration.
//!
//! A credential whose key is missing from the keyring, or whose ciphertext was altered, fails
//! with [`StoreError::Crypto`]; it is never silently replaced.

pub mod api_keys;
mod codec;
pub mod config;
pub mod connections;
mod crypto;
pub mod deliveries;
mod error;
mod keys;
pub mod outbox;
pub mod permits;
pub mod progress;
pub mod rate_limit;
pub mod records;
pub mod runs;
pub mod schedule;
pub mod status;
pub mod webhooks;

use std::fmt;
use std::sync::Arc;

use redis::aio::ConnectionManager;

pub use api_keys::{ApiKey, ApiRole, CreatedApiKey, Tenant};
pub use config::{EncryptionKey, StoreConfig};
pub use connections::ReencryptReport;
pub use deliveries::{
    AttemptUpdate, Delivery, DeliveryFilter, DeliveryJob, DeliveryState, LoggedAttempt,
    delivery_id_for,
};
pub use error::StoreError;
pub use outbox::OutboxEntry;
pub use permits::Permit;
pub use progress::Checkpoint;
pub use rate_limit::{RateLimitDecision, RateLimitPolicy};
pub use records::{StoredRecord, UpsertOutcome};
pub use runs::{NewRun, RunError, RunFilter, RunStatus, RunUpdate, SyncRun};
pub use schedule::{Claim, ClaimContext, ClaimKind, EntitySchedule, Schedule, ScheduledEntity};
pub use status::{LastError, StatusReason, StatusRecord, Transition, TransitionOutcome};
pub use webhooks::WebhookEndpoint;

/// One page of a list, with the cursor of the next page if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Pass this to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The handle to everything the store keeps; clone it freely (clones share one connection).
#[derive(Clone)]
pub struct Store {
    redis: ConnectionManager,
    config: Arc<StoreConfig>,
    keyring: Arc<crypto::Keyring>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A store over an existing connection manager (the binaries get one from their
    /// `RedisLink`).
    pub fn new(redis: ConnectionManager, config: StoreConfig) -> Result<Self, StoreError> {
        config.validate()?;
        Ok(Store {
            redis,
            keyring: Arc::new(crypto::Keyring::new(&config)),
            config: Arc::new(config),
        })
    }

    /// Connects to `redis_url` and builds a store (for tests and tools).
    pub async fn connect(redis_url: &str, config: StoreConfig) -> Result<Self, StoreError> {
        let client = redis::Client::open(redis_url)
            .map_err(|err| StoreError::Invalid(format!("redis url: {err}")))?;
        let manager = ConnectionManager::new(client).await?;
        Self::new(manager, config)
    }

    /// The configuration the store runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// A connection handle for one operation (a cheap clone of the shared manager).
    fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }
}

//! Connections, their encrypted credentials, and the indexes that list them.
//!
//! A connection's configuration and its credentials live in separate keys: every reader of a
//! connection gets a [`Connection`], which has no secrets, and only [`Store::get_credentials`]
//! decrypts. Updates are optimistic: the caller sends back the `version` it read, and a stale
//! version is a [`StoreError::Conflict`].

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::Utc;
use conveyor_core::{Connection, ConnectionId, Credentials, SyncId, TenantId};
use redis::{AsyncCommands, Script};

use crate::codec::{decode_cursor, encode_cursor, lex_page};
use crate::crypto::Sealed;
use crate::{Page, Store, StoreError, keys};

/// Keys per UNLINK when deleting a connection: bounded so one call never blocks Redis long.
const DELETE_CHUNK: usize = 100;
/// Connections read per step of [`Store::reencrypt_all`].
const REENCRYPT_CHUNK: usize = 200;

static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
        redis.call('HSET', KEYS[1], 'json', ARGV[1], 'version', '1', 'tenant_id', ARGV[2])
        redis.call('DEL', KEYS[2])
        redis.call('HSET', KEYS[2], 'key_id', ARGV[3], 'nonce', ARGV[4], 'ciphertext', ARGV[5])
        return 1
        ",
    )
});

static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local current = redis.call('HMGET', KEYS[1], 'version', 'tenant_id')
        if not current[1] then return {-1, ''} end
        if current[2] ~= ARGV[3] then return {-2, current[1]} end
        if current[1] ~= ARGV[1] then return {0, current[1]} end
        redis.call('HSET', KEYS[1], 'json', ARGV[2], 'version', tostring(tonumber(ARGV[1]) + 1))
        return {1, ''}
        ",
    )
});

static SET_CREDENTIALS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        redis.call('HSET', KEYS[2], 'key_id', ARGV[1], 'nonce', ARGV[2], 'ciphertext', ARGV[3])
        return 1
        ",
    )
});

/// Replaces a ciphertext only if it is still the one that was read, so a re-encryption never
/// overwrites credentials an operator set in the meantime.
static REPLACE_CREDENTIALS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('HGET', KEYS[1], 'nonce') ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'key_id', ARGV[2], 'nonce', ARGV[3], 'ciphertext', ARGV[4])
        return 1
        ",
    )
});

/// What [`Store::reencrypt_all`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReencryptReport {
    /// Connections whose credentials were looked at.
    pub examined: u64,
    /// Credentials rewritten under the active key.
    pub reencrypted: u64,
    /// Credentials replaced by another writer between read and rewrite (already current).
    pub skipped_concurrent: u64,
    /// Connections whose credentials could not be decrypted (unknown key or altered bytes);
    /// they are left as they are.
    pub failed: Vec<ConnectionId>,
}

impl Store {
    /// Stores a new connection and its credentials; the stored copy (returned) has version 1.
    ///
    /// Fails with `Conflict` if a connection with this id exists.
    pub async fn create_connection(
        &self,
        connection: &Connection,
        credentials: &Credentials,
    ) -> Result<Connection, StoreError> {
        let mut stored = connection.clone();
        stored.version = 1;
        let json = serde_json::to_string(&stored)
            .map_err(|err| StoreError::Invalid(format!("connection: {err}")))?;
        let sealed = self.seal_credentials(&stored.id, credentials)?;
        let mut redis = self.redis();
        let created: i64 = CREATE
            .key(keys::connection(&stored.id))
            .key(keys::credentials(&stored.id))
            .arg(json)
            .arg(stored.tenant_id.to_string())
            .arg(&sealed.key_id)
            .arg(&sealed.nonce)
            .arg(&sealed.ciphertext)
            .invoke_async(&mut redis)
            .await?;
        if created == 0 {
            return Err(StoreError::Conflict {
                what: "connection",
                id: stored.id.to_string(),
                detail: "a connection with this id already exists".into(),
            });
        }
        // Indexes after the data: a crash in between leaves an unlisted connection, never a
        // listed one without data.
        redis::pipe()
            .zadd(
                keys::tenant_connections(&stored.tenant_id),
                stored.id.to_string(),
                0,
            )
            .ignore()
            .zadd(keys::ALL_CONNECTIONS, stored.id.to_string(), 0)
            .ignore()
            .query_async::<()>(&mut redis)
            .await?;
        tracing::debug!(connection_id = %stored.id, tenant_id = %stored.tenant_id, "connection created");
        Ok(stored)
    }

    /// The connection with `id`.
    pub async fn get_connection(&self, id: &ConnectionId) -> Result<Connection, StoreError> {
        let key = keys::connection(id);
        let json: Option<String> = self.redis().hget(&key, "json").await?;
        let json = json.ok_or_else(|| StoreError::not_found("connection", id))?;
        serde_json::from_str(&json).map_err(|err| StoreError::corrupt(key, err))
    }

    /// A tenant's connections, newest first, `limit` per page (at most 1000).
    pub async fn list_connections(
        &self,
        tenant_id: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Connection>, StoreError> {
        let after = cursor.map(decode_cursor).transpose()?;
        let mut redis = self.redis();
        let (ids, more) = lex_page(
            &mut redis,
            &keys::tenant_connections(tenant_id),
            true,
            after.as_deref(),
            limit,
        )
        .await?;
        let index = keys::tenant_connections(tenant_id);
        let connection_keys = ids
            .iter()
            .map(|id| {
                id.parse::<ConnectionId>()
                    .map(|id| keys::connection(&id))
                    .map_err(|err| StoreError::corrupt(&index, err))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut pipe = redis::pipe();
        for key in &connection_keys {
            pipe.hget(key, "json");
        }
        let jsons: Vec<Option<String>> = if ids.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut redis).await?
        };
        let mut items = Vec::with_capacity(ids.len());
        for (key, json) in connection_keys.iter().zip(jsons) {
            // An id without data is a connection being deleted or created: skip it.
            let Some(json) = json else { continue };
            let connection: Connection =
                serde_json::from_str(&json).map_err(|err| StoreError::corrupt(key, err))?;
            items.push(connection);
        }
        let next_cursor = match (more, ids.last()) {
            (true, Some(last)) => Some(encode_cursor(last)),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    /// Every connection id, oldest first, `limit` per page: what the scheduler iterates.
    pub async fn list_connection_ids(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ConnectionId>, StoreError> {
        let after = cursor.map(decode_cursor).transpose()?;
        let (ids, more) = lex_page(
            &mut self.redis(),
            keys::ALL_CONNECTIONS,
            false,
            after.as_deref(),
            limit,
        )
        .await?;
        let next_cursor = match (more, ids.last()) {
            (true, Some(last)) => Some(encode_cursor(last)),
            _ => None,
        };
        let items = ids
            .iter()
            .map(|id| {
                id.parse()
                    .map_err(|err| StoreError::corrupt(keys::ALL_CONNECTIONS, err))
            })
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next_cursor })
    }

    /// Replaces a connection's configuration. `connection.version` must be the version that was
    /// read; the stored copy (returned) has the next version and a fresh `updated_at`.
    ///
    /// Fails with `Conflict` on a stale version or a changed tenant, `NotFound` if it is gone.
    pub async fn update_connection(
        &self,
        connection: &Connection,
    ) -> Result<Connection, StoreError> {
        let mut stored = connection.clone();
        stored.version = connection.version + 1;
        stored.updated_at = Utc::now();
        let json = serde_json::to_string(&stored)
            .map_err(|err| StoreError::Invalid(format!("connection: {err}")))?;
        let (outcome, current): (i64, String) = UPDATE
            .key(keys::connection(&stored.id))
            .arg(connection.version)
            .arg(json)
            .arg(stored.tenant_id.to_string())
            .invoke_async(&mut self.redis())
            .await?;
        let conflict = |detail: String| StoreError::Conflict {
            what: "connection",
            id: stored.id.to_string(),
            detail,
        };
        match outcome {
            1 => Ok(stored),
            -1 => Err(StoreError::not_found("connection", stored.id)),
            -2 => Err(conflict(
                "a connection cannot move to another tenant".into(),
            )),
            _ => Err(conflict(format!(
                "version {} is stale; the current version is {current}",
                connection.version
            ))),
        }
    }

    /// Deletes a connection and everything kept for it: credentials, cursors, checkpoints, runs,
    /// status, records, events and permits.
    ///
    /// Keys are removed with UNLINK in chunks of 100, so Redis frees large record hashes in the
    /// background instead of blocking on them.
    pub async fn delete_connection(&self, id: &ConnectionId) -> Result<(), StoreError> {
        let mut redis = self.redis();
        let tenant: Option<String> = redis.hget(keys::connection(id), "tenant_id").await?;
        let tenant = tenant.ok_or_else(|| StoreError::not_found("connection", id))?;
        // Indexes first: from here on no list shows the connection.
        let mut pipe = redis::pipe();
        if let Ok(tenant_id) = tenant.parse::<TenantId>() {
            pipe.zrem(keys::tenant_connections(&tenant_id), id.to_string())
                .ignore();
        }
        pipe.zrem(keys::ALL_CONNECTIONS, id.to_string())
            .ignore()
            .zrem(keys::OUTBOX_READY, id.to_string())
            .ignore()
            .query_async::<()>(&mut redis)
            .await?;
        let run_ids: Vec<String> = redis.zrange(keys::runs(id), 0, -1).await?;
        // A run id that does not parse cannot name a run key; the index itself is removed below.
        let sync_ids: Vec<SyncId> = run_ids
            .iter()
            .filter_map(|sync_id| sync_id.parse().ok())
            .collect();
        // The owner lookups live in other slots: one single-key UNLINK each, pipelined.
        for chunk in sync_ids.chunks(DELETE_CHUNK) {
            let mut pipe = redis::pipe();
            for sync_id in chunk {
                pipe.unlink(keys::run_owner(sync_id)).ignore();
            }
            pipe.query_async::<()>(&mut redis).await?;
        }
        let mut doomed = keys::all_of_connection(id);
        doomed.extend(sync_ids.iter().map(|sync_id| keys::run(id, sync_id)));
        for chunk in doomed.chunks(DELETE_CHUNK) {
            redis::cmd("UNLINK")
                .arg(chunk)
                .query_async::<()>(&mut redis)
                .await?;
        }
        tracing::info!(connection_id = %id, "connection deleted");
        Ok(())
    }

    /// Replaces a connection's credentials (encrypted under the active key).
    pub async fn set_credentials(
        &self,
        id: &ConnectionId,
        credentials: &Credentials,
    ) -> Result<(), StoreError> {
        let sealed = self.seal_credentials(id, credentials)?;
        let stored: i64 = SET_CREDENTIALS
            .key(keys::connection(id))
            .key(keys::credentials(id))
            .arg(&sealed.key_id)
            .arg(&sealed.nonce)
            .arg(&sealed.ciphertext)
            .invoke_async(&mut self.redis())
            .await?;
        if stored == 0 {
            return Err(StoreError::not_found("connection", id));
        }
        Ok(())
    }

    /// Decrypts a connection's credentials.
    ///
    /// Fails with `Crypto` if the key that encrypted them is not configured or the ciphertext
    /// was altered.
    pub async fn get_credentials(&self, id: &ConnectionId) -> Result<Credentials, StoreError> {
        let key = keys::credentials(id);
        let fields: HashMap<String, Vec<u8>> = self.redis().hgetall(&key).await?;
        let sealed = sealed_from_fields(&key, fields)?
            .ok_or_else(|| StoreError::not_found("credentials of connection", id))?;
        let plaintext = self.keyring.open(id, &sealed)?;
        serde_json::from_slice(&plaintext).map_err(|err| StoreError::Crypto {
            connection_id: id.to_string(),
            detail: format!("decrypted credentials are not valid JSON: {err}"),
        })
    }

    /// Rewrites every credential not encrypted under the active key, in chunks; see the crate
    /// docs for the rotation procedure.
    pub async fn reencrypt_all(&self) -> Result<ReencryptReport, StoreError> {
        let mut report = ReencryptReport::default();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .list_connection_ids(REENCRYPT_CHUNK, cursor.as_deref())
                .await?;
            for id in &page.items {
                report.examined += 1;
                let key = keys::credentials(id);
                let fields: HashMap<String, Vec<u8>> = self.redis().hgetall(&key).await?;
                let Some(sealed) = sealed_from_fields(&key, fields)? else {
                    continue;
                };
                if sealed.key_id == self.keyring.active_id() {
                    continue;
                }
                let plaintext = match self.keyring.open(id, &sealed) {
                    Ok(plaintext) => plaintext,
                    Err(err) => {
                        tracing::warn!(connection_id = %id, error = %err, "credentials not re-encrypted");
                        report.failed.push(*id);
                        continue;
                    }
                };
                let fresh = self.keyring.seal(id, &plaintext)?;
                let replaced: i64 = REPLACE_CREDENTIALS
                    .key(&key)
                    .arg(&sealed.nonce)
                    .arg(&fresh.key_id)
                    .arg(&fresh.nonce)
                    .arg(&fresh.ciphertext)
                    .invoke_async(&mut self.redis())
                    .await?;
                if replaced == 1 {
                    report.reencrypted += 1;
                } else {
                    report.skipped_concurrent += 1;
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        tracing::info!(
            examined = report.examined,
            reencrypted = report.reencrypted,
            failed = report.failed.len(),
            "credentials re-encryption finished"
        );
        Ok(report)
    }

    fn seal_credentials(
        &self,
        id: &ConnectionId,
        credentials: &Credentials,
    ) -> Result<Sealed, StoreError> {
        let plaintext = serde_json::to_vec(credentials)
            .map_err(|err| StoreError::Invalid(format!("credentials: {err}")))?;
        self.keyring.seal(id, &plaintext)
    }
}

fn sealed_from_fields(
    key: &str,
    mut fields: HashMap<String, Vec<u8>>,
) -> Result<Option<Sealed>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut take = |field: &str| {
        fields
            .remove(field)
            .ok_or_else(|| StoreError::corrupt(key, format!("field `{field}` is missing")))
    };
    let key_id = String::from_utf8(take("key_id")?)
        .map_err(|_| StoreError::corrupt(key, "key_id is not UTF-8"))?;
    Ok(Some(Sealed {
        key_id,
        nonce: take("nonce")?,
        ciphertext: take("ciphertext")?,
    }))
}

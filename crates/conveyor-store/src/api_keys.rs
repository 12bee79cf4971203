//! Tenants and API keys.
//!
//! A key's secret (`cvk_` + 32 random bytes in base64url) is returned once, when the key is
//! created; Redis keeps only its SHA-256, so a leaked Redis dump cannot authenticate. A request's
//! secret is hashed and looked up directly (`conveyor:api_key_hash:{hex}` → key id), so
//! authentication costs two GETs and no comparison loop. Lists show a short prefix of the secret
//! so people can tell keys apart, never the hash.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use conveyor_core::{ApiKeyId, Secret, TenantId};
use rand::RngCore;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::{decode_cursor, encode_cursor, lex_page};
use crate::{Page, Store, StoreError, keys};

/// What every API key secret starts with.
pub const SECRET_PREFIX: &str = "cvk_";
/// Characters of the secret shown in lists (the `cvk_` prefix and 8 more).
const SHOWN_PREFIX_LEN: usize = SECRET_PREFIX.len() + 8;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiRole {
    /// Everything, including managing API keys.
    Admin,
    /// Connections, syncs, records, webhooks.
    Developer,
    /// Queues, dead letters, connection health.
    Operator,
}

impl ApiRole {
    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            ApiRole::Admin => "admin",
            ApiRole::Developer => "developer",
            ApiRole::Operator => "operator",
        }
    }
}

impl fmt::Display for ApiRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApiRole {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(ApiRole::Admin),
            "developer" => Ok(ApiRole::Developer),
            "operator" => Ok(ApiRole::Operator),
            other => Err(StoreError::Invalid(format!(
                "unknown role `{}`; expected one of: admin, developer, operator",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }
}

/// A tenant: the owner of connections and API keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// A human name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// An API key as it may be shown: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Its id.
    pub id: ApiKeyId,
    /// The tenant it acts for.
    pub tenant_id: TenantId,
    /// What it may do.
    pub role: ApiRole,
    /// A human label.
    pub name: String,
    /// The first characters of the secret (`cvk_` and 8 more), to tell keys apart.
    pub prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked key authenticates nothing.
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key just created, with its secret: the only time the secret is available.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    /// The key.
    pub key: ApiKey,
    /// The secret to hand to the caller once.
    pub secret: Secret,
}

fn secret_hash_hex(secret: &str) -> String {
    use std::fmt::Write as _;
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

impl Store {
    /// Creates a tenant.
    pub async fn create_tenant(&self, name: &str) -> Result<Tenant, StoreError> {
        let tenant = Tenant {
            id: TenantId::new(),
            name: name.to_owned(),
            created_at: Utc::now(),
        };
        let json = serde_json::to_string(&tenant)
            .map_err(|err| StoreError::Invalid(format!("tenant: {err}")))?;
        let mut redis = self.redis();
        redis
            .set::<_, _, ()>(keys::tenant(&tenant.id), json)
            .await?;
        redis
            .zadd::<_, _, _, ()>(keys::ALL_TENANTS, tenant.id.to_string(), 0)
            .await?;
        Ok(tenant)
    }

    /// The tenant with `id`.
    pub async fn get_tenant(&self, id: &TenantId) -> Result<Tenant, StoreError> {
        let key = keys::tenant(id);
        let json: Option<String> = self.redis().get(&key).await?;
        let json = json.ok_or_else(|| StoreError::not_found("tenant", id))?;
        serde_json::from_str(&json).map_err(|err| StoreError::corrupt(key, err))
    }

    /// Every tenant, oldest first, `limit` per page (at most 1000).
    pub async fn list_tenants(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Tenant>, StoreError> {
        let after = cursor.map(decode_cursor).transpose()?;
        let (ids, more) = lex_page(
            &mut self.redis(),
            keys::ALL_TENANTS,
            false,
            after.as_deref(),
            limit,
        )
        .await?;
        let mut items = Vec::with_capacity(ids.len());
        for id in &ids {
            let id: TenantId = id
                .parse()
                .map_err(|err| StoreError::corrupt(keys::ALL_TENANTS, err))?;
            match self.get_tenant(&id).await {
                Ok(tenant) => items.push(tenant),
                Err(StoreError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        let next_cursor = match (more, ids.last()) {
            (true, Some(last)) => Some(encode_cursor(last)),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    /// Creates an API key for an existing tenant; the secret in the answer is never available
    /// again.
    pub async fn create_api_key(
        &self,
        tenant_id: &TenantId,
        role: ApiRole,
        name: &str,
    ) -> Result<CreatedApiKey, StoreError> {
        self.get_tenant(tenant_id).await?;
        let mut random = [0u8; 32];
        rand::rng().fill_bytes(&mut random);
        let secret = format!(
            "{SECRET_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
        );
        let key = ApiKey {
            id: ApiKeyId::new(),
            tenant_id: *tenant_id,
            role,
            name: name.to_owned(),
            prefix: secret.chars().take(SHOWN_PREFIX_LEN).collect(),
            created_at: Utc::now(),
            revoked_at: None,
        };
        let json = serde_json::to_string(&key)
            .map_err(|err| StoreError::Invalid(format!("api key: {err}")))?;
        let hash = secret_hash_hex(&secret);
        let mut redis = self.redis();
        // Record first, then the lookup, then the listing: a crash leaves at worst a key that
        // cannot authenticate, never a lookup pointing at nothing.
        redis
            .hset_multiple::<_, _, _, ()>(
                keys::api_key(&key.id),
                &[("json", json.as_str()), ("secret_hash", hash.as_str())],
            )
            .await?;
        redis
            .set::<_, _, ()>(keys::api_key_by_hash(&hash), key.id.to_string())
            .await?;
        redis
            .zadd::<_, _, _, ()>(keys::tenant_api_keys(tenant_id), key.id.to_string(), 0)
            .await?;
        tracing::info!(tenant_id = %tenant_id, api_key_id = %key.id, role = %role, "api key created");
        Ok(CreatedApiKey {
            key,
            secret: Secret::new(secret),
        })
    }

    /// The active key whose secret is `secret`; `NotFound` for an unknown or revoked secret.
    pub async fn authenticate_api_key(&self, secret: &str) -> Result<ApiKey, StoreError> {
        let unknown = || StoreError::not_found("api key", "(secret)");
        if !secret.starts_with(SECRET_PREFIX) {
            return Err(unknown());
        }
        let hash = secret_hash_hex(secret);
        let mut redis = self.redis();
        let id: Option<String> = redis.get(keys::api_key_by_hash(&hash)).await?;
        let Some(id) = id.and_then(|id| id.parse::<ApiKeyId>().ok()) else {
            return Err(unknown());
        };
        let (key, stored_hash) = self.read_api_key(&id).await?;
        if stored_hash != hash || key.revoked_at.is_some() {
            return Err(unknown());
        }
        Ok(key)
    }

    async fn read_api_key(&self, id: &ApiKeyId) -> Result<(ApiKey, String), StoreError> {
        let key_name = keys::api_key(id);
        let (json, hash): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(&key_name)
            .arg("json")
            .arg("secret_hash")
            .query_async(&mut self.redis())
            .await?;
        let (Some(json), Some(hash)) = (json, hash) else {
            return Err(StoreError::not_found("api key", id));
        };
        let key = serde_json::from_str(&json).map_err(|err| StoreError::corrupt(key_name, err))?;
        Ok((key, hash))
    }

    /// A tenant's keys (revoked ones included), oldest first, `limit` per page.
    pub async fn list_api_keys(
        &self,
        tenant_id: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ApiKey>, StoreError> {
        let after = cursor.map(decode_cursor).transpose()?;
        let index = keys::tenant_api_keys(tenant_id);
        let (ids, more) =
            lex_page(&mut self.redis(), &index, false, after.as_deref(), limit).await?;
        let mut items = Vec::with_capacity(ids.len());
        for id in &ids {
            let id: ApiKeyId = id.parse().map_err(|err| StoreError::corrupt(&index, err))?;
            match self.read_api_key(&id).await {
                Ok((key, _hash)) => items.push(key),
                Err(StoreError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        let next_cursor = match (more, ids.last()) {
            (true, Some(last)) => Some(encode_cursor(last)),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    /// Revokes a key of `tenant_id`; it stops authenticating at once. Revoking twice is fine.
    /// A key of another tenant is `NotFound`.
    pub async fn revoke_api_key(
        &self,
        tenant_id: &TenantId,
        id: &ApiKeyId,
    ) -> Result<ApiKey, StoreError> {
        let (mut key, hash) = self.read_api_key(id).await?;
        if key.tenant_id != *tenant_id {
            return Err(StoreError::not_found("api key", id));
        }
        if key.revoked_at.is_none() {
            key.revoked_at = Some(Utc::now());
        }
        let json = serde_json::to_string(&key)
            .map_err(|err| StoreError::Invalid(format!("api key: {err}")))?;
        let mut redis = self.redis();
        // The lookup goes first: from then on the secret authenticates nothing.
        redis.del::<_, ()>(keys::api_key_by_hash(&hash)).await?;
        redis
            .hset::<_, _, _, ()>(keys::api_key(id), "json", json)
            .await?;
        tracing::info!(tenant_id = %tenant_id, api_key_id = %id, "api key revoked");
        Ok(key)
    }
}

//! Every Redis key the store spells, in one place (the key map is in the crate docs).
//!
//! Per-connection keys start with `conveyor:{conn_...}:`; the braces make the connection id the
//! Redis Cluster hash tag, so every key of one connection lives in one slot and a script may
//! touch several of them. Global indexes have keys of their own and are only ever written by
//! single-key commands.

use conveyor_core::{ApiKeyId, ConnectionId, Entity, SyncId, TenantId};

pub(crate) fn connection(id: &ConnectionId) -> String {
    format!("conveyor:{{{id}}}:connection")
}

pub(crate) fn credentials(id: &ConnectionId) -> String {
    format!("conveyor:{{{id}}}:credentials")
}

pub(crate) fn cursors(id: &ConnectionId) -> String {
    format!("conveyor:{{{id}}}:cursors")
}

pub(crate) fn checkpoints(id: &ConnectionId) -> String {
    format!("conveyor:{{{id}}}:checkpoints")
}

pub(crate) fn status(id: &ConnectionId) -> String {
    format!("conveyor:{{{id}}}:status")
}

pub(crate) fn transitions(id: &ConnectionId) -> String {
    format!("conveyor:{{{id}}}:status:transitions")
}

pub(crate) fn counters(id: &ConnectionId) -> String {
    format!("conveyor:{{{id}}}:counters")
}

pub(crate) fn runs(id: &ConnectionId) -> String {
    format!("conveyor:{{{id}}}:runs")
}

pub(crate) fn run(id: &ConnectionId, sync_id: &SyncId) -> String {
    format!("conveyor:{{{id}}}:run:{sync_id}")
}

pub(crate) fn events(id: &ConnectionId) -> String {
    format!("conveyor:{{{id}}}:events")
}

pub(crate) fn permits(id: &ConnectionId) -> String {
    format!("conveyor:{{{id}}}:permits")
}

pub(crate) fn schedule(id: &ConnectionId) -> String {
    format!("conveyor:{{{id}}}:schedule")
}

pub(crate) fn records(id: &ConnectionId, entity: Entity) -> String {
    format!("conveyor:{{{id}}}:records:{entity}")
}

pub(crate) fn record_meta(id: &ConnectionId, entity: Entity) -> String {
    format!("conveyor:{{{id}}}:records:{entity}:meta")
}

pub(crate) fn record_changes(id: &ConnectionId, entity: Entity) -> String {
    format!("conveyor:{{{id}}}:records:{entity}:changes")
}

/// Every fixed key of a connection (not the per-run keys, which are listed from the run index).
pub(crate) fn all_of_connection(id: &ConnectionId) -> Vec<String> {
    let mut keys = vec![
        connection(id),
        credentials(id),
        cursors(id),
        checkpoints(id),
        status(id),
        transitions(id),
        counters(id),
        runs(id),
        events(id),
        permits(id),
        schedule(id),
    ];
    for &entity in Entity::ALL {
        keys.push(records(id, entity));
        keys.push(record_meta(id, entity));
        keys.push(record_changes(id, entity));
    }
    keys
}

/// Which connection a run belongs to, for callers that know only the sync id.
pub(crate) fn run_owner(sync_id: &SyncId) -> String {
    format!("conveyor:sync_run:{sync_id}")
}

/// All connections (lexicographic ZSET of ids, so ULID order = creation order).
pub(crate) const ALL_CONNECTIONS: &str = "conveyor:connections";

/// Connections whose schedule needs a look, scored by when (ms).
pub(crate) const SCHEDULE_DUE: &str = "conveyor:schedule:due";

/// Connections that have appended events since the dispatcher last drained them.
pub(crate) const OUTBOX_READY: &str = "conveyor:outbox:ready";

/// All tenants (lexicographic ZSET of ids).
pub(crate) const ALL_TENANTS: &str = "conveyor:tenants";

pub(crate) fn tenant(id: &TenantId) -> String {
    format!("conveyor:tenant:{id}")
}

pub(crate) fn tenant_connections(id: &TenantId) -> String {
    format!("conveyor:tenant:{id}:connections")
}

pub(crate) fn tenant_api_keys(id: &TenantId) -> String {
    format!("conveyor:tenant:{id}:api_keys")
}

pub(crate) fn api_key(id: &ApiKeyId) -> String {
    format!("conveyor:api_key:{id}")
}

pub(crate) fn api_key_by_hash(secret_hash_hex: &str) -> String {
    format!("conveyor:api_key_hash:{secret_hash_hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot-determining part of a key, as Redis Cluster computes it.
    fn hash_tag(key: &str) -> &str {
        match key.find('{') {
            Some(open) => match key[open + 1..].find('}') {
                Some(len) if len > 0 => &key[open + 1..open + 1 + len],
                _ => key,
            },
            None => key,
        }
    }

    #[test]
    fn every_key_of_a_connection_shares_its_hash_tag() {
        let id = ConnectionId::new();
        let tag = id.to_string();
        let mut keys = all_of_connection(&id);
        keys.push(run(&id, &SyncId::new()));
        for key in keys {
            assert_eq!(hash_tag(&key), tag, "{key}");
        }
        assert_eq!(
            records(&id, Entity::PurchaseOrders),
            format!("conveyor:{{{id}}}:records:purchase_orders")
        );
    }

    #[test]
    fn global_keys_carry_no_connection_tag() {
        let tenant_id = TenantId::new();
        assert!(!tenant_connections(&tenant_id).contains('{'));
        assert!(!api_key(&ApiKeyId::new()).contains('{'));
        assert!(!run_owner(&SyncId::new()).contains('{'));
    }
}

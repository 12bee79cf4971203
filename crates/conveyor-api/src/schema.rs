//! OpenAPI schemas of the core vocabularies, built from their `ALL` lists.
//!
//! `conveyor-core` stays free of documentation dependencies, so its closed vocabularies
//! (entities, sync modes, statuses) are described here, from the same constants the wire format
//! uses: adding a variant in the core adds it to the document with no edit here.

use conveyor_core::{ConnectionStatus, Entity, ProfileKind, SyncMode, SyncTrigger};
use conveyor_store::{ApiRole, RunStatus};
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, Type};

fn vocabulary<'a>(values: impl IntoIterator<Item = &'a str>, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.into_iter().map(str::to_owned)))
        .description(Some(description))
        .build()
}

pub(crate) fn entity() -> Object {
    vocabulary(
        Entity::ALL.iter().map(|e| e.as_str()),
        "A kind of business record.",
    )
}

pub(crate) fn entities() -> utoipa::openapi::schema::Array {
    ArrayBuilder::new()
        .items(entity())
        .min_items(Some(1))
        .description(Some("Entities, each at most once."))
        .build()
}

pub(crate) fn sync_mode() -> Object {
    vocabulary(
        SyncMode::ALL.iter().map(|m| m.as_str()),
        "`incremental` (changes since the last successful sync) or `full` (the whole historical period).",
    )
}

pub(crate) fn sync_trigger() -> Object {
    vocabulary(
        SyncTrigger::ALL.iter().map(|t| t.as_str()),
        "Why the sync ran.",
    )
}

pub(crate) fn connection_status() -> Object {
    vocabulary(
        ConnectionStatus::ALL.iter().map(|s| s.as_str()),
        "Whether Conveyor can reach and use the connection's system.",
    )
}

pub(crate) fn run_status() -> Object {
    vocabulary(
        RunStatus::ALL.iter().map(|s| s.as_str()),
        "Where a sync is in its life.",
    )
}

pub(crate) fn profile() -> Object {
    vocabulary(
        ProfileKind::ALL.iter().map(|p| p.as_str()),
        "The API family the system speaks.",
    )
}

pub(crate) fn role() -> Object {
    vocabulary(
        [ApiRole::Admin, ApiRole::Developer, ApiRole::Operator].map(ApiRole::as_str),
        "admin: everything; developer: connections, syncs, records; operator: queues, dead letters, status.",
    )
}

/// A prefixed id, with its prefix as a pattern.
pub(crate) fn id(prefix: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!(
            "^{prefix}[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{{25}}$"
        )))
        .examples([format!("{prefix}01JD0000000000000000000000")])
        .build()
}

pub(crate) fn connection_id() -> Object {
    id("conn_")
}

pub(crate) fn sync_id() -> Object {
    id("sync_")
}

pub(crate) fn job_id() -> Object {
    id("job_")
}

pub(crate) fn tenant_id() -> Object {
    id("ten_")
}

pub(crate) fn api_key_id() -> Object {
    id("key_")
}

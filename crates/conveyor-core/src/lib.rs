//! Domain and wire types shared by every Conveyor crate.
//!
//! Nothing here performs IO. Every type that crosses a process boundary (job payloads, events,
//! API error bodies) is a wire format that outlives deploys: fields are added with
//! `#[serde(default)]`, never renamed, and enum spellings are fixed string constants rather than
//! Rust type names.

pub mod connection;
pub mod domain;
pub mod error_code;
pub mod event;
pub mod id;
pub mod job;
pub mod records;

pub use connection::{Connection, Credentials, EntityConfig, ProfileKind, Secret, SourceSettings};
pub use domain::{ConnectionStatus, Entity, SyncMode, SyncTrigger, UnknownVariant};
pub use error_code::{ApiErrorBody, ApiErrorDetail, ErrorCode};
pub use event::{Event, EventType};
pub use id::{
    ApiKeyId, ConnectionId, DeliveryId, EndpointId, EventId, IdError, JobId, RequestId, SyncId,
    TenantId,
};
pub use job::SyncJob;
pub use records::{
    Asset, PurchaseOrder, PurchaseOrderLine, RecordData, UnifiedRecord, Vendor, WorkOrder,
};

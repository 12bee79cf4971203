//! Unified records: the shape every source system's records take once a connector has read them.
//!
//! Each source spells a purchase order differently (SAP `PurchaseOrder`, Maximo `ponum`, Oracle
//! `OrderNumber`); connectors map them onto these few models so the rest of Conveyor, and the
//! software reading the synced copies, sees one vocabulary. The raw source record travels along
//! untouched, as the exact JSON text the source sent ([`RawValue`]): nothing the mapping does not
//! know about is lost, and it is never parsed into a tree or written out again, which was most of
//! a sync's CPU time.
//!
//! Decimals (amounts, quantities, prices) are kept as the text the source sent, never as floats:
//! a copy must not round a customer's money. Timestamps are UTC.
//!
//! These are wire types stored by the store and returned by the API: fields are added with
//! `#[serde(default)]` and never renamed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::Entity;

/// One record read from a source system, mapped onto a unified model.
///
/// Two records are equal when their fields are and their raw records hold the same JSON value
/// (key order and spacing aside).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnifiedRecord {
    /// The source's own key of the record (`PurchaseOrder`, `workorderid`, `POHeaderId`...), as
    /// text; unique per connection and entity.
    pub external_key: String,
    /// When the source last changed the record.
    pub source_updated_at: DateTime<Utc>,
    /// Whether the source flags the record as deleted (for sources that keep deleted records
    /// with a flag, such as SAP's deletion code). Sources that drop deleted records never set it;
    /// a full sync finds those by their absence.
    #[serde(default)]
    pub deleted: bool,
    /// The mapped fields.
    pub data: RecordData,
    /// The record exactly as the source sent it: its JSON text, unparsed.
    pub raw: Box<RawValue>,
}

impl UnifiedRecord {
    /// Which entity the record belongs to.
    pub fn entity(&self) -> Entity {
        self.data.entity()
    }

    /// The raw record parsed into a JSON tree, for callers that look inside it.
    pub fn raw_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.raw.get())
    }
}

impl PartialEq for UnifiedRecord {
    fn eq(&self, other: &Self) -> bool {
        self.external_key == other.external_key
            && self.source_updated_at == other.source_updated_at
            && self.deleted == other.deleted
            && self.data == other.data
            && same_json(&self.raw, &other.raw)
    }
}

/// Whether two JSON texts hold the same value: the same text, or the same tree once parsed.
fn same_json(a: &RawValue, b: &RawValue) -> bool {
    if a.get() == b.get() {
        return true;
    }
    let parse = |raw: &RawValue| serde_json::from_str::<serde_json::Value>(raw.get()).ok();
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The mapped fields of a record, one variant per entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entity", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecordData {
    /// A purchase order.
    #[serde(rename = "purchase_orders")]
    PurchaseOrder(PurchaseOrder),
    /// A work order.
    #[serde(rename = "work_orders")]
    WorkOrder(WorkOrder),
    /// An asset.
    #[serde(rename = "assets")]
    Asset(Asset),
    /// A vendor.
    #[serde(rename = "vendors")]
    Vendor(Vendor),
}

impl RecordData {
    /// Which entity these fields belong to.
    pub fn entity(&self) -> Entity {
        match self {
            RecordData::PurchaseOrder(_) => Entity::PurchaseOrders,
            RecordData::WorkOrder(_) => Entity::WorkOrders,
            RecordData::Asset(_) => Entity::Assets,
            RecordData::Vendor(_) => Entity::Vendors,
        }
    }
}

/// A purchase order with its lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PurchaseOrder {
    /// The number people use for it (often the key, not always: Maximo `ponum`, Oracle
    /// `OrderNumber`).
    pub order_number: Option<String>,
    /// Key of the supplier it is ordered from.
    pub vendor_key: Option<String>,
    /// The source's status code or text, unchanged.
    pub status: Option<String>,
    /// ISO currency code.
    pub currency: Option<String>,
    /// Total amount as decimal text.
    pub total_amount: Option<String>,
    /// When it was ordered (or created, where the source has no order date).
    pub order_date: Option<DateTime<Utc>>,
    /// Its lines, in source order; empty when the source did not include them.
    pub lines: Vec<PurchaseOrderLine>,
}

/// One line of a purchase order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PurchaseOrderLine {
    /// The line's number within the order, as text (`"10"`, `"1"`).
    pub line_number: Option<String>,
    /// Material or item number.
    pub item: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Ordered quantity as decimal text.
    pub quantity: Option<String>,
    /// Unit of measure of the quantity.
    pub unit: Option<String>,
    /// Price per unit as decimal text.
    pub unit_price: Option<String>,
}

/// A maintenance work order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkOrder {
    /// The number people use for it (Maximo `wonum`, SAP `MaintenanceOrder`).
    pub number: Option<String>,
    /// Short text.
    pub description: Option<String>,
    /// The source's status code, unchanged.
    pub status: Option<String>,
    /// Key of the asset or equipment worked on.
    pub asset_key: Option<String>,
    /// Location or functional location.
    pub location: Option<String>,
    /// Priority, as the source spells it.
    pub priority: Option<String>,
    /// Work or order type (`PM`, `CM`, `PM01`...).
    pub work_type: Option<String>,
    /// Scheduled or basic start.
    pub scheduled_start: Option<DateTime<Utc>>,
}

/// A physical asset (Maximo asset, SAP equipment, Oracle installed-base asset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Asset {
    /// The number people use for it (`assetnum`, `Equipment`, `AssetNumber`).
    pub number: Option<String>,
    /// Short text.
    pub description: Option<String>,
    /// The source's status code, unchanged.
    pub status: Option<String>,
    /// Where it is installed.
    pub location: Option<String>,
    /// Manufacturer's serial number.
    pub serial_number: Option<String>,
}

/// A vendor (supplier, company).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Vendor {
    /// The number people use for it (`Supplier`, `company`, `SupplierNumber`).
    pub number: Option<String>,
    /// Its name.
    pub name: Option<String>,
    /// ISO country code.
    pub country: Option<String>,
    /// City.
    pub city: Option<String>,
    /// The source's status or blocking code, unchanged.
    pub status: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_an_entity_tag() {
        let record = UnifiedRecord {
            external_key: "4500000001".into(),
            source_updated_at: "2024-05-01T10:00:00Z".parse().unwrap(),
            deleted: false,
            data: RecordData::PurchaseOrder(PurchaseOrder {
                order_number: Some("4500000001".into()),
                total_amount: Some("1234.50".into()),
                lines: vec![PurchaseOrderLine {
                    line_number: Some("10".into()),
                    quantity: Some("2.000".into()),
                    ..PurchaseOrderLine::default()
                }],
                ..PurchaseOrder::default()
            }),
            raw: RawValue::from_string(
                r#"{ "PurchaseOrder": "4500000001", "Extra": [1, 2] }"#.into(),
            )
            .unwrap(),
        };
        // The raw record is written out exactly as it came.
        let text = serde_json::to_string(&record).unwrap();
        assert!(text.contains(r#""raw":{ "PurchaseOrder": "4500000001", "Extra": [1, 2] }"#));
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["data"]["entity"], "purchase_orders");
        assert_eq!(json["data"]["total_amount"], "1234.50");
        let back: UnifiedRecord = serde_json::from_value(json).unwrap();
        // Parsed into a tree and back, the raw text changed its spacing but not its value.
        assert_ne!(back.raw.get(), record.raw.get());
        assert_eq!(back, record);
        assert_eq!(back.raw_value().unwrap()["Extra"][1], 2);
        let mut changed = back.clone();
        changed.raw = RawValue::from_string(r#"{"PurchaseOrder": "4500000002"}"#.into()).unwrap();
        assert_ne!(changed, record);
        assert_eq!(back.entity(), Entity::PurchaseOrders);
    }

    #[test]
    fn missing_fields_default_so_old_payloads_still_read() {
        let json = serde_json::json!({
            "external_key": "7",
            "source_updated_at": "2024-05-01T10:00:00Z",
            "data": {"entity": "vendors", "name": "ACME"},
            "raw": {},
        });
        let record: UnifiedRecord = serde_json::from_value(json).unwrap();
        assert!(!record.deleted);
        assert_eq!(record.entity(), Entity::Vendors);
        let RecordData::Vendor(vendor) = record.data else {
            panic!("expected a vendor")
        };
        assert_eq!(vendor.name.as_deref(), Some("ACME"));
        assert_eq!(vendor.country, None);
    }
}

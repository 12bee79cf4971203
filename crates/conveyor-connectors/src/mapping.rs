//! Mapping source records onto unified records, driven by tables of field names.
//!
//! Each profile has, per entity, a table saying which source field feeds each unified field
//! (`order_number` ← `PurchaseOrder` for SAP, ← `ponum` for Maximo). A connection can override any
//! entry through `EntityConfig::field_overrides`, keyed by unified field name, because customers
//! rename and extend fields (Dynamics 365 spells things its own way under the same OData v4
//! protocol). Paths into nested objects use `/` (`to_PurchaseOrderItem/results`). Line fields are
//! named `line.<field>` and are read inside each element of the `lines` array.
//!
//! The mapping is strict about the two fields a sync cannot do without (the key and the change
//! time) and about values of the wrong kind; a field the source simply omits maps to `None`.
//!
//! A record is read from its JSON text without building a tree of it: the record object is split
//! into its members (names and unparsed value texts) once, the lines array into its lines' members
//! once more, and only the values the table names are parsed, so a field nobody maps costs a scan
//! of its bytes and no allocation. The raw text itself becomes
//! the unified record's `raw`, untouched.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, FixedOffset, Utc};
use conveyor_core::{
    Asset, Entity, ProfileKind, PurchaseOrder, PurchaseOrderLine, RecordData, UnifiedRecord,
    Vendor, WorkOrder,
};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::timestamp::parse_timestamp;

/// What kind of value a unified field holds, which decides how a source value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Text; numbers and booleans are written out as text.
    Text,
    /// A decimal kept as text; a JSON number is written out, a string must look like a number.
    Decimal,
    /// A timestamp in any spelling the sources use.
    Timestamp,
    /// A yes/no flag: `true`, or one of the codes `X`, `L`, `Y`, `1`, `true`.
    Flag,
    /// An array of purchase order lines.
    Lines,
}

const PURCHASE_ORDER_FIELDS: &[(&str, FieldKind)] = &[
    ("external_key", FieldKind::Text),
    ("updated_at", FieldKind::Timestamp),
    ("deleted", FieldKind::Flag),
    ("order_number", FieldKind::Text),
    ("vendor_key", FieldKind::Text),
    ("status", FieldKind::Text),
    ("currency", FieldKind::Text),
    ("total_amount", FieldKind::Decimal),
    ("order_date", FieldKind::Timestamp),
    ("lines", FieldKind::Lines),
    ("line.line_number", FieldKind::Text),
    ("line.item", FieldKind::Text),
    ("line.description", FieldKind::Text),
    ("line.quantity", FieldKind::Decimal),
    ("line.unit", FieldKind::Text),
    ("line.unit_price", FieldKind::Decimal),
];

const WORK_ORDER_FIELDS: &[(&str, FieldKind)] = &[
    ("external_key", FieldKind::Text),
    ("updated_at", FieldKind::Timestamp),
    ("deleted", FieldKind::Flag),
    ("number", FieldKind::Text),
    ("description", FieldKind::Text),
    ("status", FieldKind::Text),
    ("asset_key", FieldKind::Text),
    ("location", FieldKind::Text),
    ("priority", FieldKind::Text),
    ("work_type", FieldKind::Text),
    ("scheduled_start", FieldKind::Timestamp),
];

const ASSET_FIELDS: &[(&str, FieldKind)] = &[
    ("external_key", FieldKind::Text),
    ("updated_at", FieldKind::Timestamp),
    ("deleted", FieldKind::Flag),
    ("number", FieldKind::Text),
    ("description", FieldKind::Text),
    ("status", FieldKind::Text),
    ("location", FieldKind::Text),
    ("serial_number", FieldKind::Text),
];

const VENDOR_FIELDS: &[(&str, FieldKind)] = &[
    ("external_key", FieldKind::Text),
    ("updated_at", FieldKind::Timestamp),
    ("deleted", FieldKind::Flag),
    ("number", FieldKind::Text),
    ("name", FieldKind::Text),
    ("country", FieldKind::Text),
    ("city", FieldKind::Text),
    ("status", FieldKind::Text),
];

/// A unified field resolved at compile time to its position in its entity's table, so reading a
/// record never searches the table by name (that search was a tenth of the mapping time).
#[derive(Debug, Clone, Copy)]
struct Field {
    index: usize,
    name: &'static str,
}

/// The field `name` of `fields`; a name missing from the table stops the build.
const fn field(fields: &'static [(&'static str, FieldKind)], name: &'static str) -> Field {
    let mut index = 0;
    while index < fields.len() {
        if same_text(fields[index].0, name) {
            return Field { index, name };
        }
        index += 1;
    }
    panic!("a unified field constant names a field its table does not have");
}

/// The key, change time and deletion flag lead every entity's table, at the same positions.
const fn common_field(name: &'static str) -> Field {
    let first = field(PURCHASE_ORDER_FIELDS, name);
    let tables = [WORK_ORDER_FIELDS, ASSET_FIELDS, VENDOR_FIELDS];
    let mut table = 0;
    while table < tables.len() {
        if field(tables[table], name).index != first.index {
            panic!("a common field has different positions in the entity tables");
        }
        table += 1;
    }
    first
}

const fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const EXTERNAL_KEY: Field = common_field("external_key");
const UPDATED_AT: Field = common_field("updated_at");
const DELETED: Field = common_field("deleted");
const PO_ORDER_NUMBER: Field = field(PURCHASE_ORDER_FIELDS, "order_number");
const PO_VENDOR_KEY: Field = field(PURCHASE_ORDER_FIELDS, "vendor_key");
const PO_STATUS: Field = field(PURCHASE_ORDER_FIELDS, "status");
const PO_CURRENCY: Field = field(PURCHASE_ORDER_FIELDS, "currency");
const PO_TOTAL_AMOUNT: Field = field(PURCHASE_ORDER_FIELDS, "total_amount");
const PO_ORDER_DATE: Field = field(PURCHASE_ORDER_FIELDS, "order_date");
const PO_LINES: Field = field(PURCHASE_ORDER_FIELDS, "lines");
const PO_LINE_LINE_NUMBER: Field = field(PURCHASE_ORDER_FIELDS, "line.line_number");
const PO_LINE_ITEM: Field = field(PURCHASE_ORDER_FIELDS, "line.item");
const PO_LINE_DESCRIPTION: Field = field(PURCHASE_ORDER_FIELDS, "line.description");
const PO_LINE_QUANTITY: Field = field(PURCHASE_ORDER_FIELDS, "line.quantity");
const PO_LINE_UNIT: Field = field(PURCHASE_ORDER_FIELDS, "line.unit");
const PO_LINE_UNIT_PRICE: Field = field(PURCHASE_ORDER_FIELDS, "line.unit_price");
const WO_NUMBER: Field = field(WORK_ORDER_FIELDS, "number");
const WO_DESCRIPTION: Field = field(WORK_ORDER_FIELDS, "description");
const WO_STATUS: Field = field(WORK_ORDER_FIELDS, "status");
const WO_ASSET_KEY: Field = field(WORK_ORDER_FIELDS, "asset_key");
const WO_LOCATION: Field = field(WORK_ORDER_FIELDS, "location");
const WO_PRIORITY: Field = field(WORK_ORDER_FIELDS, "priority");
const WO_WORK_TYPE: Field = field(WORK_ORDER_FIELDS, "work_type");
const WO_SCHEDULED_START: Field = field(WORK_ORDER_FIELDS, "scheduled_start");
const ASSET_NUMBER: Field = field(ASSET_FIELDS, "number");
const ASSET_DESCRIPTION: Field = field(ASSET_FIELDS, "description");
const ASSET_STATUS: Field = field(ASSET_FIELDS, "status");
const ASSET_LOCATION: Field = field(ASSET_FIELDS, "location");
const ASSET_SERIAL_NUMBER: Field = field(ASSET_FIELDS, "serial_number");
const VENDOR_NUMBER: Field = field(VENDOR_FIELDS, "number");
const VENDOR_NAME: Field = field(VENDOR_FIELDS, "name");
const VENDOR_COUNTRY: Field = field(VENDOR_FIELDS, "country");
const VENDOR_CITY: Field = field(VENDOR_FIELDS, "city");
const VENDOR_STATUS: Field = field(VENDOR_FIELDS, "status");

/// The unified fields of an entity and their kinds; the keys `field_overrides` accepts.
pub fn unified_fields(entity: Entity) -> &'static [(&'static str, FieldKind)] {
    match entity {
        Entity::PurchaseOrders => PURCHASE_ORDER_FIELDS,
        Entity::WorkOrders => WORK_ORDER_FIELDS,
        Entity::Assets => ASSET_FIELDS,
        Entity::Vendors => VENDOR_FIELDS,
        // `Entity` is non-exhaustive: an entity added later has no model here until one is
        // written, and validation reports it as unsupported.
        _ => &[],
    }
}

type Table = &'static [(&'static str, &'static str)];

// SAP S/4HANA (OData v2 and v4 share field names; only the navigation to items differs).
const SAP_PURCHASE_ORDER_COMMON: Table = &[
    ("external_key", "PurchaseOrder"),
    ("updated_at", "LastChangeDateTime"),
    ("deleted", "PurchasingDocumentDeletionCode"),
    ("order_number", "PurchaseOrder"),
    ("vendor_key", "Supplier"),
    ("status", "PurchasingProcessingStatus"),
    ("currency", "DocumentCurrency"),
    ("order_date", "PurchaseOrderDate"),
    ("line.line_number", "PurchaseOrderItem"),
    ("line.item", "Material"),
    ("line.description", "PurchaseOrderItemText"),
    ("line.quantity", "OrderQuantity"),
    ("line.unit", "PurchaseOrderQuantityUnit"),
    ("line.unit_price", "NetPriceAmount"),
];
const SAP_WORK_ORDER: Table = &[
    ("external_key", "MaintenanceOrder"),
    ("updated_at", "LastChangeDateTime"),
    ("number", "MaintenanceOrder"),
    ("description", "MaintenanceOrderDesc"),
    ("status", "MaintOrdProcessPhaseCode"),
    ("asset_key", "Equipment"),
    ("location", "FunctionalLocation"),
    ("priority", "MaintPriority"),
    ("work_type", "MaintenanceOrderType"),
    ("scheduled_start", "MaintOrdBasicStartDateTime"),
];
const SAP_ASSET: Table = &[
    ("external_key", "Equipment"),
    ("updated_at", "LastChangeDateTime"),
    ("deleted", "EquipmentIsMarkedForDeletion"),
    ("number", "Equipment"),
    ("description", "EquipmentName"),
    ("status", "EquipmentCategory"),
    ("location", "FunctionalLocation"),
    ("serial_number", "SerialNumber"),
];
const SAP_VENDOR: Table = &[
    ("external_key", "Supplier"),
    ("updated_at", "LastChangeDateTime"),
    ("deleted", "DeletionIndicator"),
    ("number", "Supplier"),
    ("name", "SupplierName"),
    ("country", "Country"),
    ("city", "CityName"),
    ("status", "PostingIsBlocked"),
];

// IBM Maximo object structures (lean JSON: lower-case attribute names).
const MAXIMO_PURCHASE_ORDER: Table = &[
    ("external_key", "poid"),
    ("updated_at", "changedate"),
    ("order_number", "ponum"),
    ("vendor_key", "vendor"),
    ("status", "status"),
    ("currency", "currencycode"),
    ("total_amount", "totalcost"),
    ("order_date", "orderdate"),
    ("lines", "poline"),
    ("line.line_number", "polinenum"),
    ("line.item", "itemnum"),
    ("line.description", "description"),
    ("line.quantity", "orderqty"),
    ("line.unit", "orderunit"),
    ("line.unit_price", "unitcost"),
];
const MAXIMO_WORK_ORDER: Table = &[
    ("external_key", "workorderid"),
    ("updated_at", "changedate"),
    ("number", "wonum"),
    ("description", "description"),
    ("status", "status"),
    ("asset_key", "assetnum"),
    ("location", "location"),
    ("priority", "wopriority"),
    ("work_type", "worktype"),
    ("scheduled_start", "schedstart"),
];
const MAXIMO_ASSET: Table = &[
    ("external_key", "assetuid"),
    ("updated_at", "changedate"),
    ("number", "assetnum"),
    ("description", "description"),
    ("status", "status"),
    ("location", "location"),
    ("serial_number", "serialnum"),
];
const MAXIMO_VENDOR: Table = &[
    ("external_key", "companiesid"),
    ("updated_at", "changedate"),
    ("number", "company"),
    ("name", "name"),
    ("country", "country"),
    ("city", "city"),
    ("status", "type"),
];

// Oracle Fusion Cloud REST resources.
const ORACLE_PURCHASE_ORDER: Table = &[
    ("external_key", "POHeaderId"),
    ("updated_at", "LastUpdateDate"),
    ("order_number", "OrderNumber"),
    ("vendor_key", "SupplierId"),
    ("status", "StatusCode"),
    ("currency", "CurrencyCode"),
    ("total_amount", "Total"),
    ("order_date", "CreationDate"),
    ("lines", "lines"),
    ("line.line_number", "LineNumber"),
    ("line.item", "Item"),
    ("line.description", "Description"),
    ("line.quantity", "Quantity"),
    ("line.unit", "UOMCode"),
    ("line.unit_price", "Price"),
];
const ORACLE_WORK_ORDER: Table = &[
    ("external_key", "WorkOrderId"),
    ("updated_at", "LastUpdateDate"),
    ("number", "WorkOrderNumber"),
    ("description", "WorkOrderDescription"),
    ("status", "WorkOrderStatusCode"),
    ("asset_key", "AssetNumber"),
    ("location", "OrganizationCode"),
    ("priority", "WorkOrderPriority"),
    ("work_type", "WorkOrderTypeCode"),
    ("scheduled_start", "PlannedStartDate"),
];
const ORACLE_ASSET: Table = &[
    ("external_key", "AssetId"),
    ("updated_at", "LastUpdateDate"),
    ("number", "AssetNumber"),
    ("description", "ItemDescription"),
    ("status", "OperatingStatusCode"),
    ("location", "LocationCode"),
    ("serial_number", "SerialNumber"),
];
const ORACLE_VENDOR: Table = &[
    ("external_key", "SupplierId"),
    ("updated_at", "LastUpdateDate"),
    ("number", "SupplierNumber"),
    ("name", "Supplier"),
    ("country", "TaxpayerCountryCode"),
    ("city", "City"),
    ("status", "Status"),
];

/// The default source field of each unified field, for a profile and entity. Fields absent from
/// the table are not read unless an override names a source field.
pub fn default_fields(profile: ProfileKind, entity: Entity) -> BTreeMap<&'static str, String> {
    let (table, extra): (Table, Table) = match (profile, entity) {
        (ProfileKind::ODataV2, Entity::PurchaseOrders) => (
            SAP_PURCHASE_ORDER_COMMON,
            &[("lines", "to_PurchaseOrderItem/results")],
        ),
        (ProfileKind::ODataV4, Entity::PurchaseOrders) => (
            SAP_PURCHASE_ORDER_COMMON,
            &[("lines", "_PurchaseOrderItem")],
        ),
        (ProfileKind::ODataV2 | ProfileKind::ODataV4, Entity::WorkOrders) => (SAP_WORK_ORDER, &[]),
        (ProfileKind::ODataV2 | ProfileKind::ODataV4, Entity::Assets) => (SAP_ASSET, &[]),
        (ProfileKind::ODataV2 | ProfileKind::ODataV4, Entity::Vendors) => (SAP_VENDOR, &[]),
        (ProfileKind::Oslc, Entity::PurchaseOrders) => (MAXIMO_PURCHASE_ORDER, &[]),
        (ProfileKind::Oslc, Entity::WorkOrders) => (MAXIMO_WORK_ORDER, &[]),
        (ProfileKind::Oslc, Entity::Assets) => (MAXIMO_ASSET, &[]),
        (ProfileKind::Oslc, Entity::Vendors) => (MAXIMO_VENDOR, &[]),
        (_, Entity::PurchaseOrders) => (ORACLE_PURCHASE_ORDER, &[]),
        (_, Entity::WorkOrders) => (ORACLE_WORK_ORDER, &[]),
        (_, Entity::Assets) => (ORACLE_ASSET, &[]),
        (_, Entity::Vendors) => (ORACLE_VENDOR, &[]),
        _ => (&[], &[]),
    };
    table
        .iter()
        .chain(extra.iter())
        .map(|&(unified, source)| (unified, source.to_owned()))
        .collect()
}

/// Problems with a connection's field overrides for an entity, as messages (empty when fine).
pub fn override_problems(entity: Entity, overrides: &BTreeMap<String, String>) -> Vec<String> {
    let fields = unified_fields(entity);
    let mut problems = Vec::new();
    for (unified, source) in overrides {
        if !fields.iter().any(|(name, _)| name == unified) {
            let known: Vec<_> = fields.iter().map(|(name, _)| *name).collect();
            problems.push(format!(
                "unknown unified field `{unified}` for {entity}; expected one of: {}",
                known.join(", ")
            ));
        } else if source.trim().is_empty() || source.split('/').any(str::is_empty) {
            problems.push(format!(
                "source field for `{unified}` must be a non-empty name or a/b path"
            ));
        }
    }
    problems
}

/// A source field could not be read; the caller adds the URL and the record's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldFailure {
    /// The source field (path) that failed, or the unified one when no source field exists.
    pub(crate) field: String,
    /// What was wrong.
    pub(crate) reason: String,
}

/// A resolved mapping of one entity: the source path of each unified field.
#[derive(Debug, Clone)]
pub(crate) struct EntityMapping {
    entity: Entity,
    /// Same order as [`unified_fields`]; `None` where the source has no such field.
    paths: Vec<Option<SourcePath>>,
    default_offset: FixedOffset,
}

#[derive(Debug, Clone)]
struct SourcePath {
    text: String,
    segments: Vec<String>,
}

impl EntityMapping {
    /// The profile's defaults with the connection's overrides on top.
    pub(crate) fn new(
        profile: ProfileKind,
        entity: Entity,
        overrides: &BTreeMap<String, String>,
        default_offset: FixedOffset,
    ) -> Result<Self, Vec<String>> {
        let problems = override_problems(entity, overrides);
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut sources = default_fields(profile, entity);
        for (unified, source) in overrides {
            if let Some((name, _)) = unified_fields(entity).iter().find(|(n, _)| n == unified) {
                sources.insert(name, source.clone());
            }
        }
        let paths = unified_fields(entity)
            .iter()
            .map(|(name, _)| {
                sources.get(name).map(|text| SourcePath {
                    text: text.clone(),
                    segments: text.split('/').map(str::to_owned).collect(),
                })
            })
            .collect();
        Ok(EntityMapping {
            entity,
            paths,
            default_offset,
        })
    }

    /// The source path of a unified field, if mapped.
    pub(crate) fn source_of(&self, unified: &str) -> Option<&str> {
        self.path(unified).map(|p| p.text.as_str())
    }

    fn path(&self, unified: &str) -> Option<&SourcePath> {
        unified_fields(self.entity)
            .iter()
            .position(|(name, _)| *name == unified)
            .and_then(|index| self.paths.get(index))
            .and_then(Option::as_ref)
    }

    /// The source path of a pre-resolved unified field, if mapped.
    fn path_at(&self, field: Field) -> Option<&SourcePath> {
        self.paths.get(field.index).and_then(Option::as_ref)
    }

    fn source_at(&self, field: Field) -> Option<&str> {
        self.path_at(field).map(|p| p.text.as_str())
    }

    /// Maps one source record; the raw record is moved into the result unchanged.
    pub(crate) fn map(&self, raw: Box<RawValue>) -> Result<UnifiedRecord, FieldFailure> {
        let members = Members::of(&raw).ok_or_else(|| FieldFailure {
            field: "(record)".into(),
            reason: "a record must be a JSON object".into(),
        })?;
        let reader = Reader {
            mapping: self,
            members,
        };
        let external_key = reader
            .text(EXTERNAL_KEY)?
            .filter(|key| !key.is_empty())
            .ok_or_else(|| reader.missing(EXTERNAL_KEY))?;
        let source_updated_at = reader
            .timestamp(UPDATED_AT)?
            .ok_or_else(|| reader.missing(UPDATED_AT))?;
        let deleted = reader.flag(DELETED)?;
        let data = match self.entity {
            Entity::PurchaseOrders => RecordData::PurchaseOrder(PurchaseOrder {
                order_number: reader.text(PO_ORDER_NUMBER)?,
                vendor_key: reader.text(PO_VENDOR_KEY)?,
                status: reader.text(PO_STATUS)?,
                currency: reader.text(PO_CURRENCY)?,
                total_amount: reader.decimal(PO_TOTAL_AMOUNT)?,
                order_date: reader.timestamp(PO_ORDER_DATE)?,
                lines: reader.lines()?,
            }),
            Entity::WorkOrders => RecordData::WorkOrder(WorkOrder {
                number: reader.text(WO_NUMBER)?,
                description: reader.text(WO_DESCRIPTION)?,
                status: reader.text(WO_STATUS)?,
                asset_key: reader.text(WO_ASSET_KEY)?,
                location: reader.text(WO_LOCATION)?,
                priority: reader.text(WO_PRIORITY)?,
                work_type: reader.text(WO_WORK_TYPE)?,
                scheduled_start: reader.timestamp(WO_SCHEDULED_START)?,
            }),
            Entity::Assets => RecordData::Asset(Asset {
                number: reader.text(ASSET_NUMBER)?,
                description: reader.text(ASSET_DESCRIPTION)?,
                status: reader.text(ASSET_STATUS)?,
                location: reader.text(ASSET_LOCATION)?,
                serial_number: reader.text(ASSET_SERIAL_NUMBER)?,
            }),
            Entity::Vendors => RecordData::Vendor(Vendor {
                number: reader.text(VENDOR_NUMBER)?,
                name: reader.text(VENDOR_NAME)?,
                country: reader.text(VENDOR_COUNTRY)?,
                city: reader.text(VENDOR_CITY)?,
                status: reader.text(VENDOR_STATUS)?,
            }),
            other => {
                return Err(FieldFailure {
                    field: "(record)".into(),
                    reason: format!("entity {other} has no unified model"),
                });
            }
        };
        drop(reader);
        Ok(UnifiedRecord {
            external_key,
            source_updated_at,
            deleted,
            data,
            raw,
        })
    }
}

/// The members of one JSON object: names and unparsed value texts, in source order.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// The members of `value`; `None` unless it is an object.
    fn of(value: &'a RawValue) -> Option<Members<'a>> {
        if kind(value) != Kind::Object {
            return None;
        }
        serde_json::from_str(value.get()).ok()
    }

    /// The value of member `name`; the last one when a name repeats, as a JSON tree would keep.
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| *value)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members<'de>;
    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Members<'de>, M::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(Name(name)) = map.next_key()? {
            members.push((name, map.next_value()?));
        }
        Ok(Members(members))
    }
}

/// One element of an array of lines: its members, or none when it is not an object (as a JSON
/// tree lookup would find no fields in it).
struct LineMembers<'a>(Members<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for LineMembers<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LineVisitor;
        impl<'de> Visitor<'de> for LineVisitor {
            type Value = LineMembers<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a JSON value")
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<LineMembers<'de>, M::Error> {
                MembersVisitor.visit_map(map).map(LineMembers)
            }
            fn visit_seq<S: SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<LineMembers<'de>, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LineMembers(Members(Vec::new())))
            }
            fn visit_bool<E>(self, _: bool) -> Result<LineMembers<'de>, E> {
                Ok(LineMembers(Members(Vec::new())))
            }
            fn visit_i64<E>(self, _: i64) -> Result<LineMembers<'de>, E> {
                Ok(LineMembers(Members(Vec::new())))
            }
            fn visit_u64<E>(self, _: u64) -> Result<LineMembers<'de>, E> {
                Ok(LineMembers(Members(Vec::new())))
            }
            fn visit_f64<E>(self, _: f64) -> Result<LineMembers<'de>, E> {
                Ok(LineMembers(Members(Vec::new())))
            }
            fn visit_str<E>(self, _: &str) -> Result<LineMembers<'de>, E> {
                Ok(LineMembers(Members(Vec::new())))
            }
            fn visit_unit<E>(self) -> Result<LineMembers<'de>, E> {
                Ok(LineMembers(Members(Vec::new())))
            }
        }
        deserializer.deserialize_any(LineVisitor)
    }
}

/// A member name, borrowed from the record's text unless it holds escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(name)))
            }
            fn visit_str<E>(self, name: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(name.to_owned())))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// What kind of JSON value a text holds, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    Text,
    Array,
    Object,
}

fn kind(value: &RawValue) -> Kind {
    match value.get().trim_start().as_bytes().first() {
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b'"') => Kind::Text,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'n') | None => Kind::Null,
        Some(_) => Kind::Number,
    }
}

fn kind_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Null => "null",
        Kind::Bool => "a boolean",
        Kind::Number => "a number",
        Kind::Text => "text",
        Kind::Array => "an array",
        Kind::Object => "an object",
    }
}

/// A scalar source value, parsed from its text.
enum Scalar<'a> {
    Text(Cow<'a, str>),
    Number(serde_json::Number),
    Bool(bool),
    /// An array or object where a scalar was expected.
    Other(Kind),
}

/// Parses a value's text; `None` for null. The text comes from an already checked page, so a
/// parse error cannot happen; it reads as a value of the wrong kind if it somehow does.
fn scalar(value: &RawValue) -> Option<Scalar<'_>> {
    let text = value.get().trim();
    let parsed = match kind(value) {
        Kind::Null => return None,
        Kind::Text => match text.get(1..text.len().saturating_sub(1)) {
            // Without escapes the text between the quotes is the string itself.
            Some(inner) if !inner.contains('\\') && text.len() >= 2 => {
                Some(Scalar::Text(Cow::Borrowed(inner)))
            }
            _ => serde_json::from_str::<String>(text)
                .ok()
                .map(|owned| Scalar::Text(Cow::Owned(owned))),
        },
        Kind::Number => serde_json::from_str(text).ok().map(Scalar::Number),
        Kind::Bool => Some(Scalar::Bool(text == "true")),
        other => Some(Scalar::Other(other)),
    };
    Some(parsed.unwrap_or(Scalar::Other(kind(value))))
}

/// Reads unified fields out of one source object (a record, or one of its lines).
struct Reader<'a> {
    mapping: &'a EntityMapping,
    members: Members<'a>,
}

impl<'a> Reader<'a> {
    fn missing(&self, unified: Field) -> FieldFailure {
        FieldFailure {
            field: self
                .mapping
                .source_at(unified)
                .unwrap_or(unified.name)
                .to_owned(),
            reason: format!("the record has no value for {}", unified.name),
        }
    }

    /// The source value of a unified field; `None` when unmapped, absent or null.
    fn value(&self, unified: Field) -> Option<(&'a str, &'a RawValue)> {
        let path: &'a SourcePath = self.mapping.path_at(unified)?;
        let (last, parents) = path.segments.split_last()?;
        let current = match parents.split_first() {
            None => self.members.get(last)?,
            Some((first, rest)) => {
                let mut object = Members::of(self.members.get(first)?)?;
                for segment in rest {
                    object = Members::of(object.get(segment)?)?;
                }
                object.get(last)?
            }
        };
        (kind(current) != Kind::Null).then_some((path.text.as_str(), current))
    }

    fn scalar(&self, unified: Field) -> Option<(&'a str, Scalar<'a>)> {
        let (field, value) = self.value(unified)?;
        scalar(value).map(|scalar| (field, scalar))
    }

    fn fail(field: &str, reason: String) -> FieldFailure {
        FieldFailure {
            field: field.to_owned(),
            reason,
        }
    }

    fn text(&self, unified: Field) -> Result<Option<String>, FieldFailure> {
        match self.scalar(unified) {
            None => Ok(None),
            Some((_, Scalar::Text(text))) => Ok(Some(text.into_owned())),
            Some((_, Scalar::Number(number))) => Ok(Some(number.to_string())),
            Some((_, Scalar::Bool(flag))) => Ok(Some(flag.to_string())),
            Some((field, Scalar::Other(other))) => Err(Self::fail(
                field,
                format!("expected text, found {}", kind_of(other)),
            )),
        }
    }

    fn decimal(&self, unified: Field) -> Result<Option<String>, FieldFailure> {
        match self.scalar(unified) {
            None => Ok(None),
            Some((_, Scalar::Text(text))) if text.trim().is_empty() => Ok(None),
            Some((field, Scalar::Text(text))) => {
                if is_decimal(text.trim()) {
                    Ok(Some(text.trim().to_owned()))
                } else {
                    Err(Self::fail(
                        field,
                        format!(
                            "`{}` is not a decimal",
                            text.chars().take(40).collect::<String>()
                        ),
                    ))
                }
            }
            Some((_, Scalar::Number(number))) => Ok(Some(number.to_string())),
            Some((field, Scalar::Bool(_))) => Err(Self::fail(
                field,
                format!("expected a decimal, found {}", kind_of(Kind::Bool)),
            )),
            Some((field, Scalar::Other(other))) => Err(Self::fail(
                field,
                format!("expected a decimal, found {}", kind_of(other)),
            )),
        }
    }

    fn timestamp(&self, unified: Field) -> Result<Option<DateTime<Utc>>, FieldFailure> {
        match self.scalar(unified) {
            None => Ok(None),
            Some((_, Scalar::Text(text))) if text.trim().is_empty() => Ok(None),
            Some((field, Scalar::Text(text))) => {
                parse_timestamp(&text, self.mapping.default_offset)
                    .map(Some)
                    .map_err(|reason| Self::fail(field, reason))
            }
            Some((field, Scalar::Number(_))) => Err(Self::fail(
                field,
                format!("expected a timestamp, found {}", kind_of(Kind::Number)),
            )),
            Some((field, Scalar::Bool(_))) => Err(Self::fail(
                field,
                format!("expected a timestamp, found {}", kind_of(Kind::Bool)),
            )),
            Some((field, Scalar::Other(other))) => Err(Self::fail(
                field,
                format!("expected a timestamp, found {}", kind_of(other)),
            )),
        }
    }

    fn flag(&self, unified: Field) -> Result<bool, FieldFailure> {
        match self.scalar(unified) {
            None => Ok(false),
            Some((_, Scalar::Bool(flag))) => Ok(flag),
            Some((_, Scalar::Text(code))) => Ok(matches!(
                code.trim(),
                "X" | "L" | "Y" | "1" | "true" | "TRUE" | "True"
            )),
            Some((_, Scalar::Number(number))) => Ok(number.as_f64().is_some_and(|n| n != 0.0)),
            Some((field, Scalar::Other(other))) => Err(Self::fail(
                field,
                format!("expected a flag, found {}", kind_of(other)),
            )),
        }
    }

    fn lines(&self) -> Result<Vec<PurchaseOrderLine>, FieldFailure> {
        // Each line is split into its members while the array is read: one pass over the
        // lines' text.
        let items: Vec<LineMembers<'a>> = match self.value(PO_LINES) {
            None => return Ok(Vec::new()),
            Some((field, value)) => match kind(value) {
                Kind::Array => serde_json::from_str(value.get()).map_err(|err| {
                    Self::fail(field, format!("unreadable array of lines: {err}"))
                })?,
                other => {
                    return Err(Self::fail(
                        field,
                        format!("expected an array of lines, found {}", kind_of(other)),
                    ));
                }
            },
        };
        items
            .into_iter()
            .enumerate()
            .map(|(index, LineMembers(members))| {
                let line = Reader {
                    mapping: self.mapping,
                    members,
                };
                let read = || -> Result<PurchaseOrderLine, FieldFailure> {
                    Ok(PurchaseOrderLine {
                        line_number: line.text(PO_LINE_LINE_NUMBER)?,
                        item: line.text(PO_LINE_ITEM)?,
                        description: line.text(PO_LINE_DESCRIPTION)?,
                        quantity: line.decimal(PO_LINE_QUANTITY)?,
                        unit: line.text(PO_LINE_UNIT)?,
                        unit_price: line.decimal(PO_LINE_UNIT_PRICE)?,
                    })
                };
                read().map_err(|failure| FieldFailure {
                    field: format!(
                        "{}[{index}]/{}",
                        self.mapping.source_at(PO_LINES).unwrap_or(PO_LINES.name),
                        failure.field
                    ),
                    reason: failure.reason,
                })
            })
            .collect()
    }
}

/// `-12`, `1234.50`, `.5`, `1e3`: what sources send as decimal text.
fn is_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok =
        !(whole.is_empty() && fraction.is_empty()) && digits(whole) && digits(fraction);
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for good in ["0", "-12", "+3", "1234.50", ".5", "5.", "1e3", "2.5E-2"] {
            assert!(is_decimal(good), "{good}");
        }
        for bad in ["", "-", ".", "1,5", "abc", "1e", "1e+", "1.2.3", "NaN"] {
            assert!(!is_decimal(bad), "{bad}");
        }
    }

    #[test]
    fn every_profile_maps_every_entity_with_key_and_change_time() {
        for profile in ProfileKind::ALL {
            for entity in Entity::ALL {
                let fields = default_fields(*profile, *entity);
                assert!(fields.contains_key("external_key"), "{profile} {entity}");
                assert!(fields.contains_key("updated_at"), "{profile} {entity}");
                for name in fields.keys() {
                    assert!(
                        unified_fields(*entity).iter().any(|(n, _)| n == name),
                        "{profile} {entity} maps unknown field {name}"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_override_keys_are_reported() {
        let overrides = BTreeMap::from([
            ("external_key".to_owned(), "PurchaseOrderID".to_owned()),
            ("colour".to_owned(), "Farbe".to_owned()),
            ("status".to_owned(), "a//b".to_owned()),
        ]);
        let problems = override_problems(Entity::PurchaseOrders, &overrides);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("colour"));
        assert!(problems[1].contains("status"));
    }
}

//! Writing records as each real system spells them, straight into the response buffer.
//!
//! Every field value is derived from `(seed, entity, index, version)` by cheap hashing and
//! static word tables, and written with `write!` into one growing `Vec<u8>`: no per-record
//! `serde_json::Value`, no per-field `String`. This is what lets the simulator serve pages of a
//! thousand purchase orders fast enough for the throughput benchmark.

use std::io::Write;

use chrono::{DateTime, Datelike, Duration, Timelike};
use conveyor_core::{Entity, ProfileKind};

use crate::data::{RecordState, mix};

/// What rendering needs besides the record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RenderContext<'a> {
    pub(crate) profile: ProfileKind,
    pub(crate) entity: Entity,
    pub(crate) seed: u64,
    /// Records per entity at seeding: the range references (PO → vendor) are drawn from.
    pub(crate) population: u64,
    /// Include purchase order lines (`$expand`, `expand=lines`; always for Maximo).
    pub(crate) expand_lines: bool,
    /// The base URL links are written with (Maximo: its internal host).
    pub(crate) link_base: &'a str,
    /// Maximo's UTC offset, in seconds east.
    pub(crate) maximo_offset_secs: i32,
}

// The external keys of each profile. Tests use `crate::external_key`, which reads these.
pub(crate) const SAP_PO_BASE: u64 = 4_500_000_000;
pub(crate) const SAP_WO_BASE: u64 = 4_000_000;
pub(crate) const SAP_EQUIPMENT_BASE: u64 = 10_000_000;
pub(crate) const SAP_SUPPLIER_BASE: u64 = 17_300_000;
pub(crate) const ORACLE_PO_BASE: u64 = 300_000_001_000_000;
pub(crate) const ORACLE_WO_BASE: u64 = 300_000_002_000_000;
pub(crate) const ORACLE_ASSET_BASE: u64 = 300_000_003_000_000;
pub(crate) const ORACLE_SUPPLIER_BASE: u64 = 300_000_004_000_000;

/// The key a profile's record at `index` carries (as text).
pub(crate) fn key(profile: ProfileKind, entity: Entity, index: u64) -> String {
    match profile {
        ProfileKind::ODataV2 | ProfileKind::ODataV4 => match entity {
            Entity::PurchaseOrders => (SAP_PO_BASE + index).to_string(),
            Entity::WorkOrders => (SAP_WO_BASE + index).to_string(),
            Entity::Assets => (SAP_EQUIPMENT_BASE + index).to_string(),
            _ => (SAP_SUPPLIER_BASE + index).to_string(),
        },
        // Maximo's unique ids (poid, workorderid, assetuid, companiesid) count from 1.
        ProfileKind::Oslc => (index + 1).to_string(),
        _ => match entity {
            Entity::PurchaseOrders => (ORACLE_PO_BASE + index).to_string(),
            Entity::WorkOrders => (ORACLE_WO_BASE + index).to_string(),
            Entity::Assets => (ORACLE_ASSET_BASE + index).to_string(),
            _ => (ORACLE_SUPPLIER_BASE + index).to_string(),
        },
    }
}

const ITEMS: &[(&str, &str)] = &[
    ("TG11", "Hydraulic pump seal kit"),
    ("TG12", "Deep groove ball bearing"),
    ("RM-204", "Flange gasket set"),
    ("PM-330", "V-belt drive belt"),
    ("AS-541", "Pressure relief valve"),
    ("FC-100", "Oil filter cartridge"),
    ("MC-220", "Motor shaft coupling"),
    ("CR-090", "Conveyor idler roller"),
    ("EL-017", "Control relay 24V"),
    ("TC-400", "Type K thermocouple"),
];
const TASKS: &[&str] = &[
    "Inspect",
    "Replace",
    "Lubricate",
    "Calibrate",
    "Repair",
    "Overhaul",
];
const ASSET_KINDS: &[&str] = &[
    "Centrifugal pump",
    "Air compressor",
    "Belt conveyor",
    "Steam boiler",
    "Water chiller",
    "Packaging line",
    "Electric forklift",
    "Diesel generator",
];
const ASSET_KINDS_LOWER: &[&str] = &[
    "centrifugal pump",
    "air compressor",
    "belt conveyor",
    "steam boiler",
    "water chiller",
    "packaging line",
    "electric forklift",
    "diesel generator",
];
const VENDOR_NAMES: &[&str] = &[
    "Acme Industrial",
    "Northwind Parts",
    "Globex Supply",
    "Initech Components",
    "Umbrella Tools",
    "Stark Fasteners",
    "Wayne Hydraulics",
    "Tyrell Electric",
];
const PLACES: &[(&str, &str)] = &[
    ("US", "Pittsburgh"),
    ("DE", "Walldorf"),
    ("FR", "Lyon"),
    ("GB", "Leeds"),
    ("JP", "Osaka"),
    ("BR", "Campinas"),
];
const CURRENCIES: &[&str] = &["USD", "EUR", "GBP", "JPY"];
const UNITS: &[(&str, &str, &str)] = &[("PC", "EACH", "Ea"), ("KG", "KG", "kg"), ("M", "M", "m")];

/// The generated facts of one record version, shared by every profile's spelling of it.
struct Facts {
    hash: u64,
    index: u64,
    state: RecordState,
}

impl Facts {
    fn new(context: &RenderContext<'_>, state: RecordState) -> Self {
        let entity_salt = match context.entity {
            Entity::PurchaseOrders => 1,
            Entity::WorkOrders => 2,
            Entity::Assets => 3,
            _ => 4,
        };
        let hash =
            mix(context.seed
                ^ mix(entity_salt ^ mix(state.index ^ (u64::from(state.version) << 48))));
        Facts {
            hash,
            index: state.index,
            state,
        }
    }

    /// A value in `0..n` drawn from the record's hash and a salt.
    fn pick(&self, salt: u64, n: usize) -> usize {
        (mix(self.hash ^ salt) % n as u64) as usize
    }

    fn reference(&self, salt: u64, population: u64) -> u64 {
        mix(self.hash ^ salt) % population.max(1)
    }

    /// Order or creation date: a whole day, up to a month before the change time.
    fn day_ms(&self, salt: u64) -> i64 {
        let day = 86_400_000;
        let base = self.state.updated_ms.div_euclid(day) * day;
        base - (self.pick(salt, 30) as i64) * day
    }

    fn line_count(&self) -> usize {
        1 + self.pick(7, 3)
    }

    fn cents(&self, salt: u64, max: u64) -> u64 {
        100 + mix(self.hash ^ salt) % max
    }
}

/// A JSON object being written.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A string of our own tables (plain ASCII, no quotes or backslashes).
    fn text(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        self.out.push(b'"');
        self.out.extend_from_slice(value.as_bytes());
        self.out.push(b'"');
        self
    }

    fn text_fmt(&mut self, key: &str, value: std::fmt::Arguments<'_>) -> &mut Self {
        self.key(key);
        self.out.push(b'"');
        let _ = self.out.write_fmt(value);
        self.out.push(b'"');
        self
    }

    fn number(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        self.key(key);
        let _ = write!(self.out, "{value}");
        self
    }

    /// A decimal with two places, as a JSON string (SAP v2) or number (others).
    fn decimal(&mut self, key: &str, cents: u64, as_text: bool) -> &mut Self {
        self.key(key);
        let (quote_open, quote_close) = if as_text { ("\"", "\"") } else { ("", "") };
        let _ = write!(
            self.out,
            "{quote_open}{}.{:02}{quote_close}",
            cents / 100,
            cents % 100
        );
        self
    }

    fn boolean(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    fn time(&mut self, key: &str, ms: i64, style: TimeStyle) -> &mut Self {
        self.key(key);
        self.out.push(b'"');
        write_time(self.out, ms, style);
        self.out.push(b'"');
        self
    }

    /// Starts a nested value under `key`; the caller writes it into `self.out`.
    fn nested(&mut self, key: &str) -> &mut Vec<u8> {
        self.key(key);
        self.out
    }

    fn close(&mut self) {
        self.out.push(b'}');
    }
}

/// How a profile spells a timestamp or date.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TimeStyle {
    /// `/Date(1714557600123+0000)/` (SAP v2 Edm.DateTimeOffset).
    ODataV2Offset,
    /// `/Date(1714521600000)/` (SAP v2 Edm.DateTime).
    ODataV2Date,
    /// `2024-05-01T10:00:00.123Z`.
    IsoMillisZ,
    /// `2024-05-01`.
    IsoDate,
    /// `2024-05-01T06:00:00-04:00`, whole seconds in the server's offset (Maximo).
    SecondsInOffset(i32),
    /// `2024-05-01T10:00:00.123+00:00` (Oracle).
    IsoMillisOffset,
}

pub(crate) fn write_time(out: &mut Vec<u8>, ms: i64, style: TimeStyle) {
    match style {
        TimeStyle::ODataV2Offset => {
            let _ = write!(out, "/Date({ms}+0000)/");
            return;
        }
        TimeStyle::ODataV2Date => {
            let _ = write!(out, "/Date({ms})/");
            return;
        }
        _ => {}
    }
    let Some(utc) = DateTime::from_timestamp_millis(ms) else {
        return;
    };
    let offset_secs = match style {
        TimeStyle::SecondsInOffset(offset) => offset,
        _ => 0,
    };
    let local = utc.naive_utc() + Duration::seconds(i64::from(offset_secs));
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}",
        local.year(),
        local.month(),
        local.day()
    );
    if matches!(style, TimeStyle::IsoDate) {
        return;
    }
    let _ = write!(
        out,
        "T{:02}:{:02}:{:02}",
        local.hour(),
        local.minute(),
        local.second()
    );
    match style {
        TimeStyle::IsoMillisZ => {
            let _ = write!(out, ".{:03}Z", ms.rem_euclid(1000));
        }
        TimeStyle::IsoMillisOffset => {
            let _ = write!(out, ".{:03}+00:00", ms.rem_euclid(1000));
        }
        _ => {
            let sign = if offset_secs < 0 { '-' } else { '+' };
            let abs = offset_secs.unsigned_abs();
            let _ = write!(out, "{sign}{:02}:{:02}", abs / 3600, (abs % 3600) / 60);
        }
    }
}

/// Writes one record in the profile's spelling.
pub(crate) fn write_record(out: &mut Vec<u8>, context: &RenderContext<'_>, state: RecordState) {
    let facts = Facts::new(context, state);
    match context.profile {
        ProfileKind::ODataV2 | ProfileKind::ODataV4 => write_sap(out, context, &facts),
        ProfileKind::Oslc => write_maximo(out, context, &facts),
        _ => write_oracle(out, context, &facts),
    }
}

fn write_sap(out: &mut Vec<u8>, context: &RenderContext<'_>, facts: &Facts) {
    let v2 = context.profile == ProfileKind::ODataV2;
    let (changed, date) = if v2 {
        (TimeStyle::ODataV2Offset, TimeStyle::ODataV2Date)
    } else {
        (TimeStyle::IsoMillisZ, TimeStyle::IsoDate)
    };
    let deleted = facts.state.deleted;
    let index = facts.index;
    let mut object = Object::open(out);
    match context.entity {
        Entity::PurchaseOrders => {
            let po = SAP_PO_BASE + index;
            if v2 {
                sap_metadata(
                    &mut object,
                    context,
                    "API_PURCHASEORDER_PROCESS_SRV",
                    "A_PurchaseOrder",
                    po,
                );
            } else {
                object.text_fmt(
                    "@odata.etag",
                    format_args!("W/\\\"{}\\\"", facts.state.updated_ms),
                );
            }
            let currency = CURRENCIES[facts.pick(3, CURRENCIES.len())];
            object
                .text_fmt("PurchaseOrder", format_args!("{po}"))
                .text("CompanyCode", "1010")
                .text("PurchaseOrderType", "NB")
                .text(
                    "PurchasingDocumentDeletionCode",
                    if deleted { "L" } else { "" },
                )
                .text(
                    "PurchasingProcessingStatus",
                    ["02", "05", "05", "08"][facts.pick(2, 4)],
                )
                .text("CreatedByUser", "CB9980000012")
                .time("CreationDate", facts.day_ms(1), date)
                .time("LastChangeDateTime", facts.state.updated_ms, changed)
                .text_fmt(
                    "Supplier",
                    format_args!(
                        "{}",
                        SAP_SUPPLIER_BASE + facts.reference(4, context.population)
                    ),
                )
                .text("PurchasingOrganization", "1010")
                .text("PurchasingGroup", "001")
                .text("DocumentCurrency", currency)
                .time("PurchaseOrderDate", facts.day_ms(1), date);
            if context.expand_lines {
                let nested = object.nested(if v2 {
                    "to_PurchaseOrderItem"
                } else {
                    "_PurchaseOrderItem"
                });
                if v2 {
                    nested.extend_from_slice(b"{\"results\":");
                }
                write_lines(
                    nested,
                    facts,
                    |line, n, (material, text), quantity, unit, price| {
                        line.text_fmt("PurchaseOrder", format_args!("{po}"))
                            .text_fmt("PurchaseOrderItem", format_args!("{}", n * 10))
                            .text("PurchaseOrderItemText", text)
                            .text("Material", material)
                            .text("Plant", "1010")
                            .decimal("OrderQuantity", quantity * 100, v2)
                            .text("PurchaseOrderQuantityUnit", unit.0)
                            .decimal("NetPriceAmount", price, v2)
                            .text("DocumentCurrency", currency);
                    },
                );
                if v2 {
                    nested.push(b'}');
                }
            } else if v2 {
                let nested = object.nested("to_PurchaseOrderItem");
                let _ = write!(
                    nested,
                    "{{\"__deferred\":{{\"uri\":\"{}/sap/opu/odata/sap/API_PURCHASEORDER_PROCESS_SRV/A_PurchaseOrder('{po}')/to_PurchaseOrderItem\"}}}}",
                    context.link_base
                );
            }
        }
        Entity::WorkOrders => {
            let order = SAP_WO_BASE + index;
            if v2 {
                sap_metadata(
                    &mut object,
                    context,
                    "API_MAINTENANCEORDER",
                    "MaintenanceOrder",
                    order,
                );
            }
            let asset = facts.reference(5, context.population);
            object
                .text_fmt("MaintenanceOrder", format_args!("{order}"))
                .text(
                    "MaintenanceOrderType",
                    ["PM01", "PM02", "PM03"][facts.pick(6, 3)],
                )
                .text_fmt(
                    "MaintenanceOrderDesc",
                    format_args!(
                        "{} {}",
                        TASKS[facts.pick(8, TASKS.len())],
                        ASSET_KINDS_LOWER[(asset % ASSET_KINDS_LOWER.len() as u64) as usize]
                    ),
                )
                .text(
                    "MaintOrdProcessPhaseCode",
                    ["0", "1", "2", "3"][facts.pick(9, 4)],
                )
                .text("MaintPriority", ["1", "2", "3", "4"][facts.pick(10, 4)])
                .text_fmt("Equipment", format_args!("{}", SAP_EQUIPMENT_BASE + asset))
                .text_fmt(
                    "FunctionalLocation",
                    format_args!("1010-PLT-{:03}", asset % 200),
                )
                .time("MaintOrdBasicStartDateTime", facts.day_ms(11), changed)
                .time("LastChangeDateTime", facts.state.updated_ms, changed);
        }
        Entity::Assets => {
            let equipment = SAP_EQUIPMENT_BASE + index;
            if v2 {
                sap_metadata(
                    &mut object,
                    context,
                    "API_EQUIPMENT",
                    "Equipment",
                    equipment,
                );
            }
            object
                .text_fmt("Equipment", format_args!("{equipment}"))
                .text_fmt(
                    "EquipmentName",
                    format_args!(
                        "{} {}",
                        ASSET_KINDS[(index % ASSET_KINDS.len() as u64) as usize],
                        index
                    ),
                )
                .text("EquipmentCategory", ["M", "P", "E"][facts.pick(12, 3)])
                .boolean("EquipmentIsMarkedForDeletion", deleted)
                .text_fmt(
                    "FunctionalLocation",
                    format_args!("1010-PLT-{:03}", index % 200),
                )
                .text_fmt("SerialNumber", format_args!("SN{:08X}", facts.hash as u32))
                .time("LastChangeDateTime", facts.state.updated_ms, changed);
        }
        _ => {
            let supplier = SAP_SUPPLIER_BASE + index;
            if v2 {
                sap_metadata(
                    &mut object,
                    context,
                    "API_BUSINESS_PARTNER",
                    "A_Supplier",
                    supplier,
                );
            }
            let (country, city) = PLACES[facts.pick(13, PLACES.len())];
            object
                .text_fmt("Supplier", format_args!("{supplier}"))
                .text_fmt(
                    "SupplierName",
                    format_args!(
                        "{} {}",
                        VENDOR_NAMES[(index % VENDOR_NAMES.len() as u64) as usize],
                        index
                    ),
                )
                .text("Country", country)
                .text("CityName", city)
                .boolean("PostingIsBlocked", facts.pick(14, 20) == 0)
                .boolean("DeletionIndicator", deleted)
                .time("LastChangeDateTime", facts.state.updated_ms, changed);
        }
    }
    object.close();
}

fn sap_metadata(
    object: &mut Object<'_>,
    context: &RenderContext<'_>,
    service: &str,
    set: &str,
    key: u64,
) {
    let nested = object.nested("__metadata");
    let _ = write!(
        nested,
        "{{\"id\":\"{base}/sap/opu/odata/sap/{service}/{set}('{key}')\",\"uri\":\"{base}/sap/opu/odata/sap/{service}/{set}('{key}')\",\"type\":\"{service}.{set}Type\"}}",
        base = context.link_base
    );
}

/// Writes a JSON array of purchase order lines with a per-profile line writer.
fn write_lines(
    out: &mut Vec<u8>,
    facts: &Facts,
    mut line: impl FnMut(&mut Object<'_>, u64, (&str, &str), u64, (&str, &str, &str), u64),
) {
    out.push(b'[');
    for n in 1..=facts.line_count() as u64 {
        if n > 1 {
            out.push(b',');
        }
        let item = ITEMS[facts.pick(100 + n, ITEMS.len())];
        let quantity = 1 + facts.pick(200 + n, 50) as u64;
        let unit = UNITS[facts.pick(300 + n, UNITS.len())];
        let price = facts.cents(400 + n, 50_000);
        let mut object = Object::open(out);
        line(&mut object, n, item, quantity, unit, price);
        object.close();
    }
    out.push(b']');
}

fn write_maximo(out: &mut Vec<u8>, context: &RenderContext<'_>, facts: &Facts) {
    let changed = TimeStyle::SecondsInOffset(context.maximo_offset_secs);
    let index = facts.index;
    let id = index + 1;
    let mut object = Object::open(out);
    let structure = match context.entity {
        Entity::PurchaseOrders => "mxapipo",
        Entity::WorkOrders => "mxapiwodetail",
        Entity::Assets => "mxapiasset",
        _ => "mxapivendor",
    };
    object
        .text_fmt(
            "href",
            format_args!("{}/maximo/api/os/{structure}/_{id:X}", context.link_base),
        )
        .text_fmt("_rowstamp", format_args!("{}", facts.state.updated_ms / 10));
    match context.entity {
        Entity::PurchaseOrders => {
            let lines = facts.line_count() as u64;
            object
                .number("poid", id)
                .text_fmt("ponum", format_args!("{}", 1000 + index))
                .number("revisionnum", facts.state.version)
                .text("siteid", "BEDFORD")
                .text("orgid", "EAGLENA")
                .text_fmt(
                    "description",
                    format_args!(
                        "{} for plant {}",
                        ITEMS[facts.pick(101, ITEMS.len())].1,
                        index % 7
                    ),
                )
                .text(
                    "status",
                    ["WAPPR", "APPR", "APPR", "CLOSE"][facts.pick(2, 4)],
                )
                .text_fmt(
                    "vendor",
                    format_args!("V{}", 1000 + facts.reference(4, context.population)),
                )
                .text("currencycode", CURRENCIES[facts.pick(3, CURRENCIES.len())]);
            let mut total = 0;
            for n in 1..=lines {
                total += (1 + facts.pick(200 + n, 50) as u64) * facts.cents(400 + n, 50_000);
            }
            object
                .decimal("totalcost", total, false)
                .time("orderdate", facts.day_ms(1), changed)
                .time("changedate", facts.state.updated_ms, changed);
            let nested = object.nested("poline");
            write_lines(
                nested,
                facts,
                |line, n, (item, text), quantity, unit, price| {
                    line.number("polinenum", n)
                        .text("itemnum", item)
                        .text("description", text)
                        .decimal("orderqty", quantity * 100, false)
                        .text("orderunit", unit.1)
                        .decimal("unitcost", price, false)
                        .decimal("linecost", price * quantity, false);
                },
            );
        }
        Entity::WorkOrders => {
            let asset = facts.reference(5, context.population);
            object
                .number("workorderid", id)
                .text_fmt("wonum", format_args!("{}", 1000 + index))
                .text("siteid", "BEDFORD")
                .text_fmt(
                    "description",
                    format_args!(
                        "{} {}",
                        TASKS[facts.pick(8, TASKS.len())],
                        ASSET_KINDS_LOWER[(asset % ASSET_KINDS_LOWER.len() as u64) as usize]
                    ),
                )
                .text(
                    "status",
                    ["WAPPR", "APPR", "INPRG", "COMP"][facts.pick(9, 4)],
                )
                .text_fmt("assetnum", format_args!("{}", 10_000 + asset))
                .text_fmt("location", format_args!("BR{}", 100 + asset % 300))
                .number("wopriority", 1 + facts.pick(10, 4))
                .text("worktype", ["PM", "CM", "EM"][facts.pick(6, 3)])
                .time("schedstart", facts.day_ms(11), changed)
                .time("changedate", facts.state.updated_ms, changed);
        }
        Entity::Assets => {
            object
                .number("assetuid", id)
                .text_fmt("assetnum", format_args!("{}", 10_000 + index))
                .text("siteid", "BEDFORD")
                .text_fmt(
                    "description",
                    format_args!(
                        "{} {}",
                        ASSET_KINDS[(index % ASSET_KINDS.len() as u64) as usize],
                        index
                    ),
                )
                .text(
                    "status",
                    ["OPERATING", "OPERATING", "NOT READY", "DECOMMISSIONED"][facts.pick(12, 4)],
                )
                .text_fmt("location", format_args!("BR{}", 100 + index % 300))
                .text_fmt("serialnum", format_args!("SN{:08X}", facts.hash as u32))
                .time("changedate", facts.state.updated_ms, changed);
        }
        _ => {
            let (country, city) = PLACES[facts.pick(13, PLACES.len())];
            object
                .number("companiesid", id)
                .text_fmt("company", format_args!("V{}", 1000 + index))
                .text_fmt(
                    "name",
                    format_args!(
                        "{} {}",
                        VENDOR_NAMES[(index % VENDOR_NAMES.len() as u64) as usize],
                        index
                    ),
                )
                .text("type", ["V", "V", "M", "C"][facts.pick(14, 4)])
                .text("orgid", "EAGLENA")
                .text("country", country)
                .text("city", city)
                .boolean("disabled", false)
                .time("changedate", facts.state.updated_ms, changed);
        }
    }
    object.close();
}

fn write_oracle(out: &mut Vec<u8>, context: &RenderContext<'_>, facts: &Facts) {
    let changed = TimeStyle::IsoMillisOffset;
    let index = facts.index;
    let mut object = Object::open(out);
    match context.entity {
        Entity::PurchaseOrders => {
            let header = ORACLE_PO_BASE + index;
            let supplier = facts.reference(4, context.population);
            let (status_code, status) = [
                ("OPEN", "Open"),
                ("OPEN", "Open"),
                ("PENDING APPROVAL", "Pending Approval"),
                ("CLOSED", "Closed"),
            ][facts.pick(2, 4)];
            let lines = facts.line_count() as u64;
            let mut total = 0;
            for n in 1..=lines {
                total += (1 + facts.pick(200 + n, 50) as u64) * facts.cents(400 + n, 50_000);
            }
            object
                .number("POHeaderId", header)
                .text_fmt("OrderNumber", format_args!("US{}", 100_000 + index))
                .text("ProcurementBU", "US1 Business Unit")
                .text_fmt(
                    "Supplier",
                    format_args!(
                        "{} {}",
                        VENDOR_NAMES[(supplier % VENDOR_NAMES.len() as u64) as usize],
                        supplier
                    ),
                )
                .number("SupplierId", ORACLE_SUPPLIER_BASE + supplier)
                .text("StatusCode", status_code)
                .text("Status", status)
                .text("CurrencyCode", CURRENCIES[facts.pick(3, CURRENCIES.len())])
                .decimal("Total", total, false)
                .time("CreationDate", facts.day_ms(1), changed)
                .time("LastUpdateDate", facts.state.updated_ms, changed);
            if context.expand_lines {
                let nested = object.nested("lines");
                write_lines(
                    nested,
                    facts,
                    |line, n, (item, text), quantity, unit, price| {
                        line.number("POLineId", header * 10 + n)
                            .number("LineNumber", n)
                            .text("Item", item)
                            .text("Description", text)
                            .number("Quantity", quantity)
                            .text("UOMCode", unit.2)
                            .decimal("Price", price, false);
                    },
                );
            }
        }
        Entity::WorkOrders => {
            let asset = facts.reference(5, context.population);
            object
                .number("WorkOrderId", ORACLE_WO_BASE + index)
                .text_fmt("WorkOrderNumber", format_args!("WO{}", 100_000 + index))
                .text_fmt(
                    "WorkOrderDescription",
                    format_args!(
                        "{} {}",
                        TASKS[facts.pick(8, TASKS.len())],
                        ASSET_KINDS_LOWER[(asset % ASSET_KINDS_LOWER.len() as u64) as usize]
                    ),
                )
                .text(
                    "WorkOrderStatusCode",
                    ["ORA_UNRELEASED", "ORA_RELEASED", "ORA_COMPLETED"][facts.pick(9, 3)],
                )
                .text_fmt("AssetNumber", format_args!("AS{}", 100_000 + asset))
                .text("OrganizationCode", "M1")
                .number("WorkOrderPriority", 1 + facts.pick(10, 4))
                .text(
                    "WorkOrderTypeCode",
                    ["PREVENTIVE", "CORRECTIVE"][facts.pick(6, 2)],
                )
                .time("PlannedStartDate", facts.day_ms(11), changed)
                .time("LastUpdateDate", facts.state.updated_ms, changed);
        }
        Entity::Assets => {
            object
                .number("AssetId", ORACLE_ASSET_BASE + index)
                .text_fmt("AssetNumber", format_args!("AS{}", 100_000 + index))
                .text_fmt(
                    "ItemDescription",
                    format_args!(
                        "{} {}",
                        ASSET_KINDS[(index % ASSET_KINDS.len() as u64) as usize],
                        index
                    ),
                )
                .text(
                    "OperatingStatusCode",
                    ["ORA_IN_SERVICE", "ORA_IN_SERVICE", "ORA_OUT_OF_SERVICE"][facts.pick(12, 3)],
                )
                .text_fmt("LocationCode", format_args!("M1-LOC-{}", index % 300))
                .text_fmt("SerialNumber", format_args!("SN{:08X}", facts.hash as u32))
                .time("LastUpdateDate", facts.state.updated_ms, changed);
        }
        _ => {
            let (country, city) = PLACES[facts.pick(13, PLACES.len())];
            object
                .number("SupplierId", ORACLE_SUPPLIER_BASE + index)
                .text_fmt("SupplierNumber", format_args!("{}", 1000 + index))
                .text_fmt(
                    "Supplier",
                    format_args!(
                        "{} {}",
                        VENDOR_NAMES[(index % VENDOR_NAMES.len() as u64) as usize],
                        index
                    ),
                )
                .text("TaxpayerCountryCode", country)
                .text("City", city)
                .text("Status", "ACTIVE")
                .time("LastUpdateDate", facts.state.updated_ms, changed);
        }
    }
    object.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_styles() {
        let ms = 1_714_557_600_123; // 2024-05-01T10:00:00.123Z
        let cases = [
            (TimeStyle::ODataV2Offset, "/Date(1714557600123+0000)/"),
            (TimeStyle::IsoMillisZ, "2024-05-01T10:00:00.123Z"),
            (TimeStyle::IsoDate, "2024-05-01"),
            (
                TimeStyle::SecondsInOffset(-4 * 3600),
                "2024-05-01T06:00:00-04:00",
            ),
            (
                TimeStyle::SecondsInOffset(5 * 3600 + 1800),
                "2024-05-01T15:30:00+05:30",
            ),
            (TimeStyle::IsoMillisOffset, "2024-05-01T10:00:00.123+00:00"),
        ];
        for (style, expected) in cases {
            let mut out = Vec::new();
            write_time(&mut out, ms, style);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn every_profile_writes_valid_json_with_its_key() {
        for profile in ProfileKind::ALL {
            for entity in Entity::ALL {
                let context = RenderContext {
                    profile: *profile,
                    entity: *entity,
                    seed: 7,
                    population: 100,
                    expand_lines: true,
                    link_base: "http://127.0.0.1:1",
                    maximo_offset_secs: -4 * 3600,
                };
                let state = RecordState {
                    index: 42,
                    version: 0,
                    updated_ms: 1_714_557_600_123,
                    deleted: false,
                };
                let mut out = Vec::new();
                write_record(&mut out, &context, state);
                let value: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
                    panic!("{profile} {entity}: {e}: {}", String::from_utf8_lossy(&out))
                });
                let key = key(*profile, *entity, 42);
                let text = value.to_string();
                assert!(text.contains(&key), "{profile} {entity}: {text}");
                let mut again = Vec::new();
                write_record(&mut again, &context, state);
                assert_eq!(out, again, "deterministic");
            }
        }
    }
}

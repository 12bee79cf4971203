//! Property tests: page parsers and mappings never panic, whatever a source sends, and every
//! failure is classified as `BadData` (or, for a valid page, not at all).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

use conveyor_connectors::parse_and_map_page;
use conveyor_connectors::timestamp::{parse_timestamp, parse_utc_offset};
use conveyor_core::{Entity, ProfileKind};
use proptest::prelude::*;
use serde_json::{Value, json};

fn profiles() -> impl Strategy<Value = ProfileKind> {
    prop::sample::select(ProfileKind::ALL.to_vec())
}

fn entities() -> impl Strategy<Value = Entity> {
    prop::sample::select(Entity::ALL.to_vec())
}

/// Any JSON value, a few levels deep, with field names sources use so mappings find them.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[ -~]{0,20}".prop_map(Value::String),
        Just(json!("/Date(1714557600123+0000)/")),
        Just(json!("/Date(99999999999999999999)/")),
        Just(json!("2024-05-01T06:00:00-04:00")),
        Just(json!("12,50")),
    ];
    let names = prop::sample::select(vec![
        "PurchaseOrder",
        "LastChangeDateTime",
        "to_PurchaseOrderItem",
        "results",
        "_PurchaseOrderItem",
        "poid",
        "changedate",
        "poline",
        "POHeaderId",
        "LastUpdateDate",
        "lines",
        "NetPriceAmount",
        "Total",
        "workorderid",
        "assetuid",
        "SupplierId",
        "Supplier",
        "x",
    ]);
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(names.clone(), inner, 0..6).prop_map(|map| Value::Object(
                map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

/// `records` wrapped in the profile's page envelope.
fn envelope(profile: ProfileKind, records: Value, next: Value) -> Value {
    match profile {
        ProfileKind::ODataV2 => json!({"d": {"results": records, "__next": next}}),
        ProfileKind::ODataV4 => json!({"value": records, "@odata.nextLink": next}),
        ProfileKind::Oslc => {
            json!({"member": records, "responseInfo": {"nextPage": {"href": next}}})
        }
        _ => json!({"items": records, "hasMore": next}),
    }
}

fn only_bad_data(
    result: Result<usize, conveyor_connectors::ConnectorError>,
) -> Result<(), TestCaseError> {
    if let Err(error) = result {
        prop_assert_eq!(error.class(), "bad_data", "{}", error);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(profile in profiles(), entity in entities(), body in prop::collection::vec(any::<u8>(), 0..512)) {
        only_bad_data(parse_and_map_page(profile, entity, &body))?;
    }

    #[test]
    fn arbitrary_json_in_the_envelope_never_panics(
        profile in profiles(),
        entity in entities(),
        records in prop::collection::vec(json_value(), 0..4),
        next in json_value(),
    ) {
        let page = envelope(profile, Value::Array(records), next);
        only_bad_data(parse_and_map_page(profile, entity, page.to_string().as_bytes()))?;
    }

    #[test]
    fn any_json_document_never_panics(profile in profiles(), entity in entities(), document in json_value()) {
        only_bad_data(parse_and_map_page(profile, entity, document.to_string().as_bytes()))?;
    }

    #[test]
    fn truncated_valid_pages_are_bad_data(profile in profiles(), cut in 1usize..200) {
        let record = match profile {
            ProfileKind::ODataV2 | ProfileKind::ODataV4 => json!({"PurchaseOrder": "4500000001", "LastChangeDateTime": "2024-05-01T10:00:00Z"}),
            ProfileKind::Oslc => json!({"poid": 1, "changedate": "2024-05-01T06:00:00-04:00"}),
            _ => json!({"POHeaderId": 1, "LastUpdateDate": "2024-05-01T10:00:00+00:00"}),
        };
        let next = if profile == ProfileKind::OffsetHasMore { json!(false) } else { Value::Null };
        let text = envelope(profile, json!([record.clone(), record]), next).to_string();
        prop_assert_eq!(parse_and_map_page(profile, Entity::PurchaseOrders, text.as_bytes()).unwrap(), 2);
        let cut = cut.min(text.len() - 1);
        only_bad_data(parse_and_map_page(profile, Entity::PurchaseOrders, &text.as_bytes()[..text.len() - cut]))?;
        prop_assert!(parse_and_map_page(profile, Entity::PurchaseOrders, &text.as_bytes()[..text.len() - cut]).is_err());
    }

    #[test]
    fn timestamps_and_offsets_never_panic(text in "\\PC{0,40}", ms in any::<i64>()) {
        let offset = parse_utc_offset("-04:00").unwrap();
        let _ = parse_timestamp(&text, offset);
        let _ = parse_utc_offset(&text);
        let _ = parse_timestamp(&format!("/Date({ms}+0000)/"), offset);
        let _ = parse_timestamp(&format!("/Date({ms})/"), offset);
    }

    #[test]
    fn odata_v2_dates_round_trip(ms in -8_000_000_000_000i64..8_000_000_000_000i64) {
        let offset = parse_utc_offset("Z").unwrap();
        let parsed = parse_timestamp(&format!("/Date({ms}+0000)/"), offset).unwrap();
        prop_assert_eq!(parsed.timestamp_millis(), ms);
    }
}

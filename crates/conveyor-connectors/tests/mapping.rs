//! Data-driven mapping tests: each file in `tests/mapping_cases/` holds a realistic source record
//! of one profile and entity, optional field overrides, and either the expected unified record
//! or the expected error. Adding a case is adding a file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

use std::collections::BTreeMap;
use std::path::Path;

use conveyor_connectors::map_record;
use conveyor_connectors::timestamp::parse_utc_offset;
use conveyor_core::{Entity, ProfileKind, UnifiedRecord};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    profile: ProfileKind,
    entity: Entity,
    #[serde(default)]
    utc_offset: Option<String>,
    #[serde(default)]
    field_overrides: BTreeMap<String, String>,
    input: serde_json::Value,
    #[serde(default)]
    expected: Option<serde_json::Value>,
    #[serde(default)]
    expected_error: Option<String>,
}

#[test]
fn every_mapping_case_holds() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mapping_cases");
    let mut files: Vec<_> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "cases found: {}", files.len());
    let mut profiles_seen = std::collections::BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let case: Case =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        profiles_seen.insert(case.profile.as_str());
        let offset = parse_utc_offset(case.utc_offset.as_deref().unwrap_or("Z")).unwrap();
        let result = map_record(
            case.profile,
            case.entity,
            &case.field_overrides,
            offset,
            case.input.clone(),
        );
        match (case.expected, case.expected_error) {
            (Some(mut expected), None) => {
                expected["raw"] = case.input;
                let expected: UnifiedRecord = serde_json::from_value(expected)
                    .unwrap_or_else(|e| panic!("{}: expected is not a record: {e}", case.name));
                let got = result.unwrap_or_else(|e| panic!("{}: {e}", case.name));
                assert_eq!(got, expected, "{}", case.name);
            }
            (None, Some(message)) => {
                let error = result.expect_err(&case.name);
                assert_eq!(error.class(), "bad_data", "{}", case.name);
                assert!(
                    error.to_string().contains(&message),
                    "{}: `{error}` does not contain `{message}`",
                    case.name
                );
            }
            _ => panic!(
                "{}: give exactly one of expected, expected_error",
                case.name
            ),
        }
    }
    assert_eq!(
        profiles_seen.len(),
        ProfileKind::ALL.len(),
        "every profile has cases"
    );
}

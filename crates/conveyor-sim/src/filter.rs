//! Reading the change-time filters of each profile, as the real systems accept them.
//!
//! Only comparisons of the change-time field joined by `and` are understood, which is what
//! incremental syncs send. Anything else is refused with a 400 in the profile's error shape, as
//! a real system refuses a filter it cannot run; Maximo in particular has no `or` in
//! `oslc.where` worth relying on.

use chrono::{DateTime, NaiveDateTime};
use conveyor_core::ProfileKind;

use crate::data::TimeBounds;

/// Parses a filter into time bounds at `granularity_ms`. `field` is the change-time field name.
pub(crate) fn parse_filter(
    profile: ProfileKind,
    text: &str,
    field: &str,
    granularity_ms: i64,
) -> Result<TimeBounds, String> {
    let mut bounds = TimeBounds::default();
    for clause in split_and(text)? {
        let (name, op, value) = split_clause(profile, clause)?;
        if !name.eq_ignore_ascii_case(field) {
            return Err(format!(
                "filtering on `{name}` is not supported; only `{field}` is"
            ));
        }
        let ms = parse_value(profile, value)?;
        // A bound is compared with record times already cut to the granularity; cutting the
        // bound the same way keeps `>`/`<=` meaning what they mean at the source.
        let floored = ms.div_euclid(granularity_ms) * granularity_ms;
        let exact = floored == ms;
        match op {
            Op::Gt => bounds.lower = Some((floored, false)),
            Op::Ge => {
                bounds.lower = Some((
                    if exact {
                        floored
                    } else {
                        floored + granularity_ms
                    },
                    true,
                ))
            }
            Op::Lt => {
                bounds.upper = Some((
                    if exact {
                        floored
                    } else {
                        floored + granularity_ms
                    },
                    false,
                ))
            }
            Op::Le => bounds.upper = Some((floored, true)),
        }
    }
    Ok(bounds)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

fn split_and(text: &str) -> Result<Vec<&str>, String> {
    let lower = text.to_ascii_lowercase();
    if lower.contains(" or ") {
        return Err("`or` is not supported in this filter".into());
    }
    let mut clauses = Vec::new();
    let mut rest = 0;
    for (at, _) in lower.match_indices(" and ") {
        clauses.push(text[rest..at].trim());
        rest = at + " and ".len();
    }
    clauses.push(text[rest..].trim());
    if clauses.iter().any(|c| c.is_empty()) {
        return Err("empty clause in filter".into());
    }
    Ok(clauses)
}

fn split_clause(profile: ProfileKind, clause: &str) -> Result<(&str, Op, &str), String> {
    match profile {
        ProfileKind::ODataV2 | ProfileKind::ODataV4 => {
            let mut parts = clause.split_whitespace();
            let (Some(name), Some(op), Some(value), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("cannot read filter clause `{clause}`"));
            };
            let op = match op {
                "gt" => Op::Gt,
                "ge" => Op::Ge,
                "lt" => Op::Lt,
                "le" => Op::Le,
                other => return Err(format!("operator `{other}` is not supported")),
            };
            Ok((name, op, value))
        }
        _ => {
            // `changedate>"…"` (Maximo) or `LastUpdateDate > '…'` (Oracle).
            let at = clause
                .find(['<', '>', '='])
                .ok_or_else(|| format!("cannot read filter clause `{clause}`"))?;
            let name = clause[..at].trim();
            let rest = &clause[at..];
            let (op, value) = if let Some(value) = rest.strip_prefix(">=") {
                (Op::Ge, value)
            } else if let Some(value) = rest.strip_prefix("<=") {
                (Op::Le, value)
            } else if let Some(value) = rest.strip_prefix('>') {
                (Op::Gt, value)
            } else if let Some(value) = rest.strip_prefix('<') {
                (Op::Lt, value)
            } else {
                return Err(format!("operator in `{clause}` is not supported"));
            };
            Ok((name, op, value.trim()))
        }
    }
}

fn parse_value(profile: ProfileKind, value: &str) -> Result<i64, String> {
    let inner = match profile {
        ProfileKind::ODataV2 => value
            .strip_prefix("datetimeoffset'")
            .or_else(|| value.strip_prefix("datetime'"))
            .and_then(|v| v.strip_suffix('\'')),
        ProfileKind::ODataV4 => Some(value),
        ProfileKind::Oslc => value.strip_prefix('"').and_then(|v| v.strip_suffix('"')),
        _ => value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')),
    }
    .ok_or_else(|| format!("`{value}` is not a timestamp literal of this service"))?;
    if let Ok(at) = DateTime::parse_from_rfc3339(inner) {
        return Ok(at.timestamp_millis());
    }
    // OData v2 `datetime'…'` literals have no offset and mean UTC.
    NaiveDateTime::parse_from_str(inner, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|naive| naive.and_utc().timestamp_millis())
        .map_err(|_| format!("`{inner}` is not a timestamp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAY_1: i64 = 1_714_521_600_000; // 2024-05-01T00:00:00Z

    #[test]
    fn every_profile_syntax() {
        let cases = [
            (
                ProfileKind::ODataV2,
                "LastChangeDateTime gt datetimeoffset'2024-05-01T00:00:00Z' and LastChangeDateTime le datetimeoffset'2024-05-01T00:00:01.5Z'",
                "LastChangeDateTime",
            ),
            (
                ProfileKind::ODataV4,
                "LastChangeDateTime gt 2024-05-01T00:00:00Z and LastChangeDateTime le 2024-05-01T00:00:01.500Z",
                "LastChangeDateTime",
            ),
            (
                ProfileKind::Oslc,
                "changedate>\"2024-04-30T20:00:00-04:00\" and changedate<=\"2024-04-30T20:00:01.5-04:00\"",
                "changedate",
            ),
            (
                ProfileKind::OffsetHasMore,
                "LastUpdateDate > '2024-05-01T00:00:00Z' and LastUpdateDate <= '2024-05-01T00:00:01.500+00:00'",
                "LastUpdateDate",
            ),
        ];
        for (profile, text, field) in cases {
            let bounds = parse_filter(profile, text, field, 1).unwrap();
            assert_eq!(bounds.lower, Some((MAY_1, false)), "{profile}");
            assert_eq!(bounds.upper, Some((MAY_1 + 1_500, true)), "{profile}");
        }
        let seconds = parse_filter(
            ProfileKind::Oslc,
            "changedate<=\"2024-05-01T00:00:01.5Z\"",
            "changedate",
            1_000,
        )
        .unwrap();
        assert_eq!(seconds.upper, Some((MAY_1 + 1_000, true)));
    }

    #[test]
    fn refusals() {
        for (profile, text) in [
            (
                ProfileKind::Oslc,
                "changedate>\"2024-05-01T00:00:00Z\" or changedate<\"2024-05-02T00:00:00Z\"",
            ),
            (ProfileKind::ODataV4, "Supplier eq '1'"),
            (ProfileKind::ODataV4, "LastChangeDateTime gt yesterday"),
            (
                ProfileKind::ODataV2,
                "LastChangeDateTime gt '2024-05-01T00:00:00Z'",
            ),
            (ProfileKind::OffsetHasMore, "LastUpdateDate ~ '2024'"),
            (ProfileKind::OffsetHasMore, " and "),
        ] {
            assert!(
                parse_filter(profile, text, "LastChangeDateTime", 1).is_err(),
                "{text}"
            );
        }
    }
}

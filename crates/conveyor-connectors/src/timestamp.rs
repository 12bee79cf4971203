//! Reading the timestamp spellings of source systems, and writing the ones their filters expect.
//!
//! Sources disagree: SAP OData v2 sends `/Date(1474433263752+0000)/` (milliseconds since the
//! epoch, offset in minutes for information), OData v4 and Oracle send RFC 3339, Maximo sends
//! RFC 3339 at second granularity in the server's own offset, and some fields are plain dates.
//! One lenient reader accepts all of them so a mapping does not need to know which it will get.

use chrono::{
    DateTime, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Timelike, Utc,
};

/// Reads a timestamp in any spelling a supported source uses. A spelling without an offset is
/// read in `default_offset` (the source server's zone); a plain date is midnight UTC.
pub fn parse_timestamp(text: &str, default_offset: FixedOffset) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Some(inner) = text
        .strip_prefix("/Date(")
        .and_then(|rest| rest.strip_suffix(")/"))
    {
        return parse_odata_v2_date(inner).ok_or_else(|| format!("`{text}` is not a /Date(ms)/"));
    }
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Ok(parsed.with_timezone(&Utc));
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return default_offset
            .from_local_datetime(&naive)
            .single()
            .map(|local| local.with_timezone(&Utc))
            .ok_or_else(|| format!("`{text}` does not exist in offset {default_offset}"));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(midnight) = date.and_hms_opt(0, 0, 0)
    {
        return Ok(midnight.and_utc());
    }
    Err(format!("`{}` is not a timestamp", shorten_for_error(text)))
}

/// `1474433263752+0000` or `-1000` → the instant. The milliseconds are UTC already; the optional
/// offset only says which zone the value was entered in, so it is checked but not applied.
fn parse_odata_v2_date(inner: &str) -> Option<DateTime<Utc>> {
    // The sign of an offset can only follow at least one digit, so skip a leading minus.
    let offset_start = inner
        .char_indices()
        .skip(1)
        .find(|&(_, c)| c == '+' || c == '-')
        .map(|(i, _)| i);
    let (millis, offset) = match offset_start {
        Some(i) => (&inner[..i], Some(&inner[i + 1..])),
        None => (inner, None),
    };
    if let Some(offset) = offset
        && (offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let millis: i64 = millis.parse().ok()?;
    DateTime::from_timestamp_millis(millis)
}

fn shorten_for_error(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Parses a UTC offset setting such as `-04:00`, `+05:30`, `Z` or `+00:00`.
pub fn parse_utc_offset(text: &str) -> Option<FixedOffset> {
    if text == "Z" {
        return FixedOffset::east_opt(0);
    }
    let bytes = text.as_bytes();
    if bytes.len() != 6 || bytes[3] != b':' {
        return None;
    }
    let sign = match bytes[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours: i32 = text.get(1..3)?.parse().ok()?;
    let minutes: i32 = text.get(4..6)?.parse().ok()?;
    if !text[1..3].bytes().all(|b| b.is_ascii_digit())
        || !text[4..6].bytes().all(|b| b.is_ascii_digit())
        || hours > 14
        || minutes > 59
    {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// How finely a source records change times; filters are written at this granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Granularity {
    Millisecond,
    Second,
}

impl Granularity {
    /// The instant rounded down to the granularity.
    pub(crate) fn floor(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let nanos = at.nanosecond() % 1_000_000_000;
        let keep = match self {
            Granularity::Millisecond => nanos - nanos % 1_000_000,
            Granularity::Second => 0,
        };
        at.with_nanosecond(keep).unwrap_or(at)
    }
}

/// RFC 3339 in UTC with `Z`, with fractional seconds only when there are some.
pub(crate) fn rfc3339_utc(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// RFC 3339 at whole seconds in the given offset (Maximo's spelling).
pub(crate) fn rfc3339_in_offset(at: DateTime<Utc>, offset: FixedOffset) -> String {
    at.with_timezone(&offset)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn reads_every_source_spelling() {
        let minus4 = parse_utc_offset("-04:00").unwrap();
        let cases = [
            ("/Date(1474433263752+0000)/", "2016-09-21T04:47:43.752Z"),
            ("/Date(1474433263752)/", "2016-09-21T04:47:43.752Z"),
            ("/Date(1474433263752-0240)/", "2016-09-21T04:47:43.752Z"),
            ("/Date(-1000)/", "1969-12-31T23:59:59Z"),
            ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00Z"),
            (
                "2024-05-01T10:00:00.1234567Z",
                "2024-05-01T10:00:00.1234567Z",
            ),
            ("2024-05-01T06:00:00-04:00", "2024-05-01T10:00:00Z"),
            ("2024-05-01T10:00:00.5+00:00", "2024-05-01T10:00:00.5Z"),
            ("2024-05-01T06:00:00", "2024-05-01T10:00:00Z"),
            ("2024-05-01", "2024-05-01T00:00:00Z"),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_timestamp(input, minus4), Ok(utc(expected)), "{input}");
        }
        for bad in [
            "",
            "yesterday",
            "/Date()/",
            "/Date(12+)/",
            "/Date(1x)/",
            "2024-13-01",
        ] {
            assert!(parse_timestamp(bad, minus4).is_err(), "{bad}");
        }
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_utc_offset("-04:00"), FixedOffset::west_opt(4 * 3600));
        assert_eq!(
            parse_utc_offset("+05:30"),
            FixedOffset::east_opt(5 * 3600 + 1800)
        );
        assert_eq!(parse_utc_offset("Z"), FixedOffset::east_opt(0));
        for bad in ["", "04:00", "+4:00", "+15:00", "+04:60", "+0400", "-0a:00"] {
            assert_eq!(parse_utc_offset(bad), None, "{bad}");
        }
    }

    #[test]
    fn filter_spellings() {
        let at = utc("2024-05-01T10:00:00.123456Z");
        assert_eq!(
            rfc3339_utc(Granularity::Millisecond.floor(at)),
            "2024-05-01T10:00:00.123Z"
        );
        assert_eq!(
            rfc3339_utc(Granularity::Second.floor(at)),
            "2024-05-01T10:00:00Z"
        );
        assert_eq!(
            rfc3339_in_offset(at, parse_utc_offset("-04:00").unwrap()),
            "2024-05-01T06:00:00-04:00"
        );
    }
}

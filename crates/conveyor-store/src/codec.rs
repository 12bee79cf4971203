//! How values are spelled inside Redis: timestamps as epoch milliseconds, opaque page cursors,
//! and reading fields out of hash replies.

use std::collections::HashMap;

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};

use crate::StoreError;

/// A timestamp as Redis stores it: milliseconds since the Unix epoch (Lua scripts compare and
/// produce these with `TIME`; they cannot parse RFC 3339).
pub(crate) fn to_ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_ms(key: &str, ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::corrupt(key, format!("timestamp {ms} is out of range")))
}

/// An opaque cursor: base64url of the position, so callers treat it as a token and never build
/// one by hand.
pub(crate) fn encode_cursor(position: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(position)
}

pub(crate) fn decode_cursor(cursor: &str) -> Result<String, StoreError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| StoreError::Invalid("malformed page cursor".into()))
}

/// A Redis hash read with HGETALL, with typed getters that name the key on bad data.
pub(crate) struct HashFields<'a> {
    pub(crate) key: &'a str,
    pub(crate) fields: HashMap<String, String>,
}

impl<'a> HashFields<'a> {
    pub(crate) fn new(key: &'a str, fields: HashMap<String, String>) -> Self {
        HashFields { key, fields }
    }

    pub(crate) fn opt_str(&self, field: &str) -> Option<&str> {
        self.fields
            .get(field)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn str(&self, field: &str) -> Result<&str, StoreError> {
        self.opt_str(field)
            .ok_or_else(|| StoreError::corrupt(self.key, format!("field `{field}` is missing")))
    }

    pub(crate) fn parse<T: std::str::FromStr>(&self, field: &str) -> Result<T, StoreError>
    where
        T::Err: std::fmt::Display,
    {
        self.str(field)?
            .parse()
            .map_err(|err| StoreError::corrupt(self.key, format!("field `{field}`: {err}")))
    }

    pub(crate) fn opt_parse<T: std::str::FromStr>(
        &self,
        field: &str,
    ) -> Result<Option<T>, StoreError>
    where
        T::Err: std::fmt::Display,
    {
        match self.opt_str(field) {
            None => Ok(None),
            Some(_) => self.parse(field).map(Some),
        }
    }

    pub(crate) fn count(&self, field: &str) -> Result<u64, StoreError> {
        Ok(self.opt_parse(field)?.unwrap_or(0))
    }

    pub(crate) fn time(&self, field: &str) -> Result<DateTime<Utc>, StoreError> {
        from_ms(self.key, self.parse(field)?)
    }

    pub(crate) fn opt_time(&self, field: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_parse::<i64>(field)?
            .map(|ms| from_ms(self.key, ms))
            .transpose()
    }
}

/// Largest page any list returns, whatever the caller asks for.
pub(crate) const MAX_PAGE: usize = 1_000;

/// Reads up to `limit` members of a lexicographic ZSET after `after` (exclusive), oldest first
/// or newest first; the flag says whether more members follow.
pub(crate) async fn lex_page(
    redis: &mut redis::aio::ConnectionManager,
    key: &str,
    newest_first: bool,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<String>, bool), StoreError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let mut cmd = redis::cmd("ZRANGE");
    cmd.arg(key);
    let bound = after.map(|member| format!("({member}"));
    if newest_first {
        cmd.arg(bound.as_deref().unwrap_or("+"))
            .arg("-")
            .arg("BYLEX")
            .arg("REV");
    } else {
        cmd.arg(bound.as_deref().unwrap_or("-"))
            .arg("+")
            .arg("BYLEX");
    }
    cmd.arg("LIMIT").arg(0).arg(limit + 1);
    let mut members: Vec<String> = cmd.query_async(redis).await?;
    let more = members.len() > limit;
    members.truncate(limit);
    Ok((members, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_invalid() {
        let position = "0001700000000000:0000000000000042:PO-1";
        assert_eq!(decode_cursor(&encode_cursor(position)).unwrap(), position);
        assert!(matches!(decode_cursor("***"), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn milliseconds_round_trip() {
        let now = Utc.timestamp_millis_opt(1_763_900_000_123).unwrap();
        assert_eq!(from_ms("k", to_ms(now)).unwrap(), now);
        assert!(from_ms("k", i64::MAX).is_err());
    }
}

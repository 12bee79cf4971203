//! Faults switched on at runtime, per profile, to show how connectors and syncs behave when a
//! source misbehaves.
//!
//! A fault applies to listing requests of its profile. It can wait for `after_requests` good
//! requests first (so "fail at page N" is `after_requests: N - 1`) and can stop after `count`
//! faulty answers (so "429 once, then fine" is `count: 1`).

use serde::{Deserialize, Serialize};

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// 503 with a load balancer's HTML page: the system is down behind its proxy.
    Outage,
    /// The connection is cut before an answer is complete, as when a system dies mid-request.
    ConnectionDrop,
    /// 429 with `Retry-After: retry_after_secs`.
    RateLimit,
    /// 401: credentials expired or revoked.
    Unauthorized,
    /// The answer comes after `delay_ms`.
    Slow,
    /// 200 with a page cut off in the middle of a record.
    MalformedPage,
    /// `status` (default 500) with the profile's error body.
    ServerError,
}

/// A fault to switch on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// What goes wrong.
    pub kind: FaultKind,
    /// Good listing requests to let through first. Defaults to 0.
    #[serde(default)]
    pub after_requests: u64,
    /// Faulty answers to give before behaving again; `None` (default) until cleared.
    #[serde(default)]
    pub count: Option<u64>,
    /// `Retry-After` of a `rate_limit`, in seconds. Defaults to 1.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
    /// Delay of a `slow` answer, in milliseconds. Defaults to 2000.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Status of a `server_error`. Defaults to 500.
    #[serde(default)]
    pub status: Option<u16>,
}

impl FaultSpec {
    /// A fault of `kind` with every option at its default.
    pub fn new(kind: FaultKind) -> Self {
        FaultSpec {
            kind,
            after_requests: 0,
            count: None,
            retry_after_secs: None,
            delay_ms: None,
            status: None,
        }
    }

    /// Lets `requests` good requests through first.
    pub fn after(mut self, requests: u64) -> Self {
        self.after_requests = requests;
        self
    }

    /// Stops after `count` faulty answers.
    pub fn times(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }
}

/// A switched-on fault and how far it got.
#[derive(Debug, Clone)]
pub(crate) struct ActiveFault {
    pub(crate) spec: FaultSpec,
    seen: u64,
    fired: u64,
}

impl ActiveFault {
    pub(crate) fn new(spec: FaultSpec) -> Self {
        ActiveFault {
            spec,
            seen: 0,
            fired: 0,
        }
    }

    /// Counts a listing request; returns the fault if this one is faulty.
    pub(crate) fn on_request(&mut self) -> Option<FaultSpec> {
        self.seen += 1;
        let due = self.seen > self.spec.after_requests;
        let left = self.spec.count.is_none_or(|count| self.fired < count);
        if due && left {
            self.fired += 1;
            Some(self.spec.clone())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_and_count_shape_the_faulty_requests() {
        let mut fault = ActiveFault::new(FaultSpec::new(FaultKind::Outage).after(2).times(2));
        let faulty: Vec<bool> = (0..6).map(|_| fault.on_request().is_some()).collect();
        assert_eq!(faulty, [false, false, true, true, false, false]);
        let json: FaultSpec =
            serde_json::from_str(r#"{"kind":"rate_limit","retry_after_secs":3}"#).unwrap();
        assert_eq!(json.kind, FaultKind::RateLimit);
        assert_eq!(json.retry_after_secs, Some(3));
        assert_eq!(json.count, None);
    }
}

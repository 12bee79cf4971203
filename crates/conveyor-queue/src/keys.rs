//! The only place Redis key names of a queue are spelled.
//!
//! Every key of queue `syncs` starts with `conveyor:{q:syncs}:`; the `{q:syncs}` hash tag puts
//! them all in one Redis Cluster slot, which the Lua scripts need (a script may only touch keys
//! of one slot). Job keys are built inside the scripts from the same prefix, with the same names
//! as here (`scripts.rs` spells them once, in its common header).
//!
//! The hot path (fetch, succeed) keeps per-job data in a few queue-wide hashes keyed by job id
//! (payloads, attempts, running leases, succeeded records), so a batch of N jobs costs a few
//! Redis commands of N items each instead of several commands per job. The per-job hash
//! (`job:<id>`) holds what only the slow paths need (unique key, the state of a scheduled,
//! retrying or dead job, its last error) and does not exist for a plain ready job.

/// Key names of one queue.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `conveyor:{q:<name>}:`; the scripts append `job:<id>`, `errors:<id>`, `dead_kind:<kind>`.
    pub(crate) prefix: String,
    /// List of ready job ids: pushed on the left, taken from the right.
    pub(crate) ready: String,
    /// Sorted set of delayed and retrying job ids, scored by due time (ms).
    pub(crate) scheduled: String,
    /// Sorted set of running job ids, scored by lease expiry (ms).
    pub(crate) leases: String,
    /// Sorted set of dead job ids, scored by the time they died (ms).
    pub(crate) dead: String,
    /// Hash from unique key to the job id holding it.
    pub(crate) unique: String,
    /// Short list idle workers block on; pushes add a token to wake them.
    pub(crate) signal: String,
    /// Hash from job id to its JSON payload (the only copy).
    pub(crate) payloads: String,
    /// Hash from job id to `attempts/max_attempts`.
    pub(crate) attempts: String,
    /// Hash from job id to `token|started_ms|worker` for each leased job.
    pub(crate) running: String,
    /// Hash from job id to `finished_ms|attempts/max_attempts` for recently succeeded jobs.
    pub(crate) done: String,
}

impl Keys {
    pub(crate) fn new(queue: &str) -> Self {
        let prefix = format!("conveyor:{{q:{queue}}}:");
        Keys {
            ready: format!("{prefix}ready"),
            scheduled: format!("{prefix}scheduled"),
            leases: format!("{prefix}leases"),
            dead: format!("{prefix}dead"),
            unique: format!("{prefix}unique"),
            signal: format!("{prefix}signal"),
            payloads: format!("{prefix}payloads"),
            attempts: format!("{prefix}attempts"),
            running: format!("{prefix}running"),
            done: format!("{prefix}done"),
            prefix,
        }
    }

    pub(crate) fn job(&self, job_id: &str) -> String {
        format!("{}job:{job_id}", self.prefix)
    }

    pub(crate) fn errors(&self, job_id: &str) -> String {
        format!("{}errors:{job_id}", self.prefix)
    }

    pub(crate) fn dead_kind(&self, kind: &str) -> String {
        format!("{}dead_kind:{kind}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_the_queue_hash_tag() {
        let keys = Keys::new("syncs");
        for key in [
            &keys.ready,
            &keys.scheduled,
            &keys.leases,
            &keys.dead,
            &keys.unique,
            &keys.signal,
            &keys.payloads,
            &keys.attempts,
            &keys.running,
            &keys.done,
            &keys.job("job_1"),
            &keys.errors("job_1"),
            &keys.dead_kind("timeout"),
        ] {
            assert!(key.starts_with("conveyor:{q:syncs}:"), "{key}");
        }
    }
}

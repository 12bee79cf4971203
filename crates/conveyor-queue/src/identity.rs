//! Worker identity: `hostname-pid-ULID`, unique per process start.
//!
//! The hostname and pid say where a job runs; the ULID makes a restarted process (same host,
//! possibly the same pid in a container) a different worker from its previous run.

/// A fresh identity for a worker starting now.
pub fn worker_identity() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| {
            std::fs::read_to_string(path)
                .ok()
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{host}-{}-{}", std::process::id(), ulid::Ulid::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_differ_between_starts_of_the_same_process() {
        let first = worker_identity();
        let second = worker_identity();
        assert_ne!(first, second);
        assert!(
            first.contains(&format!("-{}-", std::process::id())),
            "{first}"
        );
    }
}

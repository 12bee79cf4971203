//! Redis's own counters around a phase: `INFO commandstats` and socket reads.
//!
//! The harness resets the counters (`CONFIG RESETSTAT`) before a phase and reads them once
//! after it, with a single `INFO commandstats stats` call. Command counts include the commands
//! Lua scripts run (Redis counts a `redis.call` like any other command), so they measure the
//! work Redis does per job. Socket reads count how often Redis woke up to read from a client:
//! pipelined commands arriving together are one read.

use std::collections::BTreeMap;

/// Commands the harness itself sends around a phase (MONITOR and its end marker in the
/// counting pass); left out of the counts.
const HARNESS_COMMANDS: &[&str] = &["info", "config|resetstat", "monitor", "echo"];

/// The counters read after a phase.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerCounters {
    /// Calls per command (subcommands spelled `config|get`), the harness's own left out.
    pub commands: BTreeMap<String, u64>,
    /// `total_reads_processed`: socket reads from clients, less the harness's INFO.
    pub reads: u64,
    /// CPU seconds the server has used since it started (`used_cpu_user` + `used_cpu_sys`);
    /// RESETSTAT does not reset it, so a phase's share is the difference of two readings.
    pub cpu_seconds: f64,
}

impl ServerCounters {
    /// All calls of all commands.
    pub fn total_commands(&self) -> u64 {
        self.commands.values().sum()
    }
}

/// Zeroes the server's counters.
pub fn reset(connection: &mut redis::Connection) -> Result<(), redis::RedisError> {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query::<()>(connection)
}

/// Reads the counters since the last [`reset`].
pub fn read(connection: &mut redis::Connection) -> Result<ServerCounters, redis::RedisError> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .arg("stats")
        .arg("cpu")
        .query(connection)?;
    Ok(parse_info(&info))
}

/// The server's CPU seconds so far, read before a phase.
pub fn cpu_seconds(connection: &mut redis::Connection) -> Result<f64, redis::RedisError> {
    let info: String = redis::cmd("INFO").arg("cpu").query(connection)?;
    Ok(parse_info(&info).cpu_seconds)
}

/// Parses the `commandstats`, `stats` and `cpu` sections of an INFO reply.
pub fn parse_info(info: &str) -> ServerCounters {
    let mut counters = ServerCounters::default();
    for line in info.lines() {
        if let Some(rest) = line.strip_prefix("cmdstat_") {
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            if HARNESS_COMMANDS.contains(&name) {
                continue;
            }
            let calls = fields
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))
                .and_then(|calls| calls.parse::<u64>().ok());
            if let Some(calls) = calls {
                counters.commands.insert(name.to_owned(), calls);
            }
        } else if let Some(seconds) = line
            .strip_prefix("used_cpu_user:")
            .or_else(|| line.strip_prefix("used_cpu_sys:"))
        {
            counters.cpu_seconds += seconds.trim().parse::<f64>().unwrap_or(0.0);
        } else if let Some(reads) = line.strip_prefix("total_reads_processed:") {
            // The read that carried this INFO is the harness's, not the system's.
            counters.reads = reads.trim().parse::<u64>().unwrap_or(0).saturating_sub(1);
        }
    }
    counters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_command_but_the_harness_own() {
        let info = "# Commandstats\r\n\
            cmdstat_evalsha:calls=20099,usec=1539296,usec_per_call=76.59,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_client|setname:calls=1,usec=4,usec_per_call=4.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_info:calls=6,usec=398,usec_per_call=66.33,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_config|resetstat:calls=1,usec=84,usec_per_call=84.00,rejected_calls=0,failed_calls=0\r\n\
            # Stats\r\n\
            total_commands_processed:480937\r\n\
            total_reads_processed:1478\r\n\
            # CPU\r\n\
            used_cpu_sys:1.500000\r\n\
            used_cpu_user:2.250000\r\n\
            used_cpu_sys_children:9.000000\r\n";
        let counters = parse_info(info);
        assert_eq!(
            counters.commands,
            BTreeMap::from([
                ("client|setname".to_owned(), 1),
                ("evalsha".to_owned(), 20099)
            ])
        );
        assert_eq!(counters.total_commands(), 20100);
        assert_eq!(counters.reads, 1477);
        assert_eq!(counters.cpu_seconds, 3.75);
    }
}

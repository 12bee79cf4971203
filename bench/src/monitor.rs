//! Counting the commands clients send to Redis, apart from those Lua scripts run, with MONITOR.
//!
//! INFO commandstats counts a command run by a script like one a client sent, so it cannot tell
//! how many requests crossed the network. MONITOR can: it tags script commands with `lua`.
//! MONITOR slows Redis down a lot, so the harness uses it only in a separate, smaller counting
//! pass, never while it times a phase. Each client command is at most one round trip (pipelined
//! commands share one), so commands per job is an upper bound on round trips per job.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::BenchError;

/// How long the reader waits for the next line before giving up on a silent server.
const READ_TIMEOUT: Duration = Duration::from_secs(600);

/// Commands seen during a monitored phase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCommands {
    /// Commands sent by clients, by name (lowercase).
    pub by_command: BTreeMap<String, u64>,
    /// Commands run inside Lua scripts.
    pub in_scripts: u64,
}

impl ClientCommands {
    /// All commands clients sent.
    pub fn total(&self) -> u64 {
        self.by_command.values().sum()
    }

    /// Counts one MONITOR line; returns false for the end marker.
    fn count_line(&mut self, line: &str, marker: &str) -> bool {
        let Some(seen) = parse_line(line) else {
            return true;
        };
        if seen.command == "echo" && line.contains(marker) {
            return false;
        }
        if seen.in_script {
            self.in_scripts += 1;
        } else {
            *self.by_command.entry(seen.command).or_default() += 1;
        }
        true
    }
}

/// One command as MONITOR shows it.
#[derive(Debug, PartialEq, Eq)]
struct SeenCommand {
    command: String,
    in_script: bool,
}

/// Parses `+1700000000.123456 [0 127.0.0.1:5555] "evalsha" "..."`; the source in brackets is
/// `<db> lua` for a command a script ran.
fn parse_line(line: &str) -> Option<SeenCommand> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let source = &line[open + 1..close];
    let in_script = source.split_whitespace().nth(1) == Some("lua");
    let rest = &line[close + 1..];
    let start = rest.find('"')? + 1;
    let end = start + rest[start..].find('"')?;
    Some(SeenCommand {
        command: rest[start..end].to_ascii_lowercase(),
        in_script,
    })
}

/// A MONITOR connection counting commands on a background thread.
#[derive(Debug)]
pub struct Monitor {
    reader: JoinHandle<Result<ClientCommands, std::io::Error>>,
    marker: String,
}

impl Monitor {
    /// Connects to the server on `127.0.0.1:port` and starts counting.
    pub fn start(port: u16) -> Result<Monitor, BenchError> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .map_err(BenchError::io("connecting the MONITOR client"))?;
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .map_err(BenchError::io("setting the MONITOR read timeout"))?;
        stream
            .write_all(b"MONITOR\r\n")
            .map_err(BenchError::io("sending MONITOR"))?;
        let mut reader = BufReader::with_capacity(1 << 20, stream);
        // Wait for +OK so that no command sent after `start` returns is missed.
        let mut first = String::new();
        reader
            .read_line(&mut first)
            .map_err(BenchError::io("reading the MONITOR reply"))?;
        if !first.starts_with("+OK") {
            return Err(BenchError::System(format!(
                "MONITOR answered {first:?} instead of +OK"
            )));
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        let marker = format!("conveyor-bench-monitor-end-{}-{nanos}", std::process::id());
        let thread_marker = marker.clone();
        let reader = std::thread::spawn(move || {
            let mut counts = ClientCommands::default();
            let mut line = Vec::with_capacity(512);
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line)? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                if !counts.count_line(&String::from_utf8_lossy(&line), &thread_marker) {
                    return Ok(counts);
                }
            }
        });
        Ok(Monitor { reader, marker })
    }

    /// Sends the end marker through `connection` and returns what was counted before it.
    pub fn finish(self, connection: &mut redis::Connection) -> Result<ClientCommands, BenchError> {
        redis::cmd("ECHO")
            .arg(&self.marker)
            .query::<String>(connection)?;
        match self.reader.join() {
            Ok(result) => result.map_err(BenchError::io("reading MONITOR output")),
            Err(_) => Err(BenchError::System(
                "the MONITOR reader thread panicked".to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_client_commands_from_script_commands() {
        let mut counts = ClientCommands::default();
        let lines = [
            "+OK\r\n",
            "+1700000000.000001 [0 127.0.0.1:5555] \"EVALSHA\" \"abc\" \"2\"\r\n",
            "+1700000000.000002 [0 lua] \"hmget\" \"q:data\" \"a \\\"quoted\\\" id\"\r\n",
            "+1700000000.000003 [0 lua] \"rpush\" \"q:list\" \"x\"\r\n",
            "+1700000000.000004 [0 127.0.0.1:5556] \"lpush\" \"q\" \"[0 lua]\"\r\n",
        ];
        for line in lines {
            assert!(counts.count_line(line, "the-end"));
        }
        assert!(!counts.count_line(
            "+1700000000.000005 [0 127.0.0.1:5557] \"echo\" \"the-end\"\r\n",
            "the-end"
        ));
        assert_eq!(counts.in_scripts, 2);
        assert_eq!(
            counts.by_command,
            BTreeMap::from([("evalsha".to_owned(), 1), ("lpush".to_owned(), 1)])
        );
        assert_eq!(counts.total(), 2);
    }
}

#[cfg(test)]
mod server_tests {
    use conveyor_testkit::RedisServer;

    use super::*;
    use crate::redis_counters;

    #[test]
    fn counts_what_a_real_server_runs_inside_and_outside_scripts() {
        let server = RedisServer::start().expect("redis-server starts");
        let mut harness = server.client().get_connection().expect("harness connects");
        let mut client = server.client().get_connection().expect("client connects");
        redis_counters::reset(&mut harness).expect("counters reset");
        let monitor = Monitor::start(server.port()).expect("MONITOR starts");

        redis::cmd("SET")
            .arg("a")
            .arg(1)
            .query::<()>(&mut client)
            .expect("SET");
        redis::cmd("EVAL")
            .arg("redis.call('INCR', 'a'); redis.call('INCR', 'b'); return 1")
            .arg(0)
            .query::<i64>(&mut client)
            .expect("EVAL");

        let counted = monitor.finish(&mut harness).expect("MONITOR finishes");
        assert_eq!(
            counted.by_command,
            BTreeMap::from([("eval".to_owned(), 1), ("set".to_owned(), 1)])
        );
        assert_eq!(counted.in_scripts, 2);
        let counters = redis_counters::read(&mut harness).expect("counters read");
        assert_eq!(
            counters.commands,
            BTreeMap::from([
                ("eval".to_owned(), 1),
                ("incr".to_owned(), 2),
                ("set".to_owned(), 1)
            ]),
            "the harness's MONITOR, ECHO and INFO are left out"
        );
    }
}

//! A real `redis-server` for one test.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{ChildGuard, free_port};

/// What can go wrong starting a test Redis.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// `redis-server` is not on the PATH.
    #[error(
        "redis-server was not found on PATH. Install it with `sudo apt-get install -y redis-server` \
         (Debian/Ubuntu) or `brew install redis` (macOS), or run `just test`, which installs it"
    )]
    RedisMissing,
    /// The server did not answer PING in time.
    #[error("redis-server on port {port} did not answer PING within {waited:?}: {detail}")]
    NotReady {
        /// The port it was started on.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// The last error, and the end of its log.
        detail: String,
    },
    /// Spawning or preparing the server failed.
    #[error("starting redis-server: {0}")]
    Io(#[from] std::io::Error),
}

/// Whether the server persists its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Persistence {
    /// Nothing is saved (`--save '' --appendonly no`): the fastest, for most tests.
    #[default]
    None,
    /// Append-only file with an fsync on every write, so a kill -9 loses nothing.
    Aof,
}

/// Options for [`RedisServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct RedisServerOptions {
    /// Persistence mode; AOF is needed for [`RedisServer::restart`] to keep data.
    pub persistence: Persistence,
    /// Extra `--name value` arguments passed to redis-server as they are.
    pub extra_args: Vec<String>,
}

/// A running `redis-server` owned by one test; killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    options: RedisServerOptions,
    child: Option<ChildGuard>,
}

const READY_TIMEOUT: Duration = Duration::from_secs(10);

impl RedisServer {
    /// Starts a server without persistence.
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_with(RedisServerOptions::default())
    }

    /// Starts a server with append-only persistence, so [`restart`](Self::restart) keeps data.
    pub fn start_persistent() -> Result<Self, TestkitError> {
        Self::start_with(RedisServerOptions {
            persistence: Persistence::Aof,
            ..Default::default()
        })
    }

    /// Starts a server with `options` on a free port.
    pub fn start_with(options: RedisServerOptions) -> Result<Self, TestkitError> {
        which_redis()?;
        let dir = tempfile::Builder::new()
            .prefix("conveyor-redis-")
            .tempdir()?;
        let mut server = RedisServer {
            port: 0,
            dir,
            options,
            child: None,
        };
        // Another process may take the free port between our probe and redis binding it; try a
        // few ports before giving up.
        let mut attempts = 0;
        loop {
            server.port = free_port();
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(err @ TestkitError::RedisMissing) => return Err(err),
                Err(err) if attempts >= 4 => return Err(err),
                Err(_) => {
                    server.stop();
                    attempts += 1;
                }
            }
        }
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port the server listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (AOF files live here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The redis-server process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// A synchronous client, for test setup and assertions.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("a loopback redis URL is always valid")
    }

    /// Stops the server (SIGKILL, as a crash would) but keeps its directory.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Starts the server again on the same port with the same directory, after [`stop`](Self::stop).
    pub fn start_again(&mut self) -> Result<(), TestkitError> {
        self.stop();
        // The old socket can linger briefly; retry binding for a short while.
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return Ok(()),
                Err(err) if Instant::now() >= deadline => return Err(err),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Kills the server and starts it again on the same port. With [`Persistence::Aof`] every
    /// acknowledged write survives; without it the data is gone.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.start_again()
    }

    fn spawn_and_wait(&mut self) -> Result<(), TestkitError> {
        let log = self.dir.path().join("redis.log");
        let mut command = Command::new("redis-server");
        command
            .current_dir(self.dir.path())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--dir", &self.dir.path().display().to_string()])
            .args(["--logfile", &log.display().to_string()])
            .args(["--save", ""])
            .args(["--daemonize", "no"]);
        match self.options.persistence {
            Persistence::None => {
                command.args(["--appendonly", "no"]);
            }
            Persistence::Aof => {
                command.args(["--appendonly", "yes", "--appendfsync", "always"]);
            }
        }
        command.args(&self.options.extra_args);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => TestkitError::RedisMissing,
            _ => TestkitError::Io(err),
        })?;
        self.child = Some(ChildGuard::new(
            format!("redis-server:{}", self.port),
            child,
        ));
        self.wait_until_ready(&log)
    }

    fn wait_until_ready(&mut self, log: &Path) -> Result<(), TestkitError> {
        let started = Instant::now();
        let client = self.client();
        let mut last = String::new();
        while started.elapsed() < READY_TIMEOUT {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.wait_timeout(Duration::ZERO))
            {
                self.child = None;
                return Err(TestkitError::NotReady {
                    port: self.port,
                    waited: started.elapsed(),
                    detail: format!("redis-server exited with {status}; log: {}", tail(log)),
                });
            }
            match client.get_connection_with_timeout(Duration::from_millis(200)) {
                Ok(mut conn) => match redis::cmd("PING").query::<String>(&mut conn) {
                    Ok(_) => return Ok(()),
                    // LOADING while an AOF is replayed: keep waiting.
                    Err(err) => last = err.to_string(),
                },
                Err(err) => last = err.to_string(),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(TestkitError::NotReady {
            port: self.port,
            waited: started.elapsed(),
            detail: format!("{last}; log: {}", tail(log)),
        })
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<_> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

fn which_redis() -> Result<(), TestkitError> {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("redis-server").is_file()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(TestkitError::RedisMissing)
    }
}

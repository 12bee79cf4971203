//! Test helpers that use real parts, never mocks.
//!
//! [`RedisServer`] starts a real `redis-server` on a free 127.0.0.1 port in its own temporary
//! directory, waits until it answers PING and kills it when dropped. Every test gets a server of
//! its own, so tests running in parallel never share keys and no test can FLUSHALL a server
//! another test uses. [`RedisServer::restart`] keeps the data (with AOF persistence on), for the
//! reliability tests that restart Redis mid-run.

mod binaries;
mod cluster;
mod process;
mod redis_server;

pub use binaries::{Spawned, cargo_bin};
pub use cluster::RedisCluster;
pub use process::{ChildGuard, free_port};
pub use redis_server::{Persistence, RedisServer, RedisServerOptions, TestkitError};

//! What every Conveyor binary shares at start-up.
//!
//! - [`config`]: read `CONVEYOR_*` variables once through a lookup function, report every bad
//!   variable at once, and let the binary exit non-zero before it binds a port.
//! - [`telemetry`]: tracing, human-readable on a terminal, JSON with `CONVEYOR_LOG_FORMAT=json`.
//! - [`shutdown`]: one cancellation token that SIGTERM and SIGINT trip.
//! - [`redis_link`]: a Redis connection that is made lazily and heals itself, so a binary starts
//!   (and answers `/healthz`) while Redis is still down.

pub mod config;
pub mod redis_link;
pub mod shutdown;
pub mod telemetry;

pub use config::{CommonConfig, ConfigError, ConfigProblem, ConfigReader};
pub use redis_link::RedisLink;
pub use shutdown::Shutdown;
pub use telemetry::LogFormat;

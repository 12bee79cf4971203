//! Redis connections: one shared, self-reconnecting connection for scripts and commands, and
//! dedicated connections for the blocking reads of idle workers.
//!
//! A blocking read (BLPOP) on the shared multiplexed connection would stall every other
//! command queued behind it and be cut by the response timeout, so each waiting worker opens
//! its own connection for it.

use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};

/// How long a command on the shared connection may take. Scripts work on bounded chunks, so
/// this is generous; it only exists so a dead socket is noticed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack on top of the blocking time for the dedicated waiting connection.
const BLOCKING_SLACK: Duration = Duration::from_secs(5);

/// Where the queue's Redis is.
#[derive(Clone)]
pub(crate) enum Target {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Single(_) => f.write_str("Target::Single"),
            Target::Cluster(_) => f.write_str("Target::Cluster"),
        }
    }
}

/// The shared connection: cheap to clone, reconnects by itself.
#[derive(Clone)]
pub(crate) enum SharedConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for SharedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SharedConnection::Single(_) => f.write_str("SharedConnection::Single"),
            SharedConnection::Cluster(_) => f.write_str("SharedConnection::Cluster"),
        }
    }
}

impl Target {
    pub(crate) async fn shared(&self) -> redis::RedisResult<SharedConnection> {
        match self {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_connection_timeout(Some(Duration::from_secs(5)))
                    .set_max_delay(Duration::from_secs(2));
                client
                    .get_connection_manager_with_config(config)
                    .await
                    .map(SharedConnection::Single)
            }
            Target::Cluster(client) => client
                .get_async_connection()
                .await
                .map(SharedConnection::Cluster),
        }
    }

    /// A connection of its own for blocking reads of up to `longest_block`.
    pub(crate) async fn blocking(
        &self,
        longest_block: Duration,
    ) -> redis::RedisResult<BlockingConnection> {
        let timeout = longest_block + BLOCKING_SLACK;
        match self {
            Target::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_response_timeout(Some(timeout))
                    .set_connection_timeout(Some(Duration::from_secs(5)));
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(BlockingConnection::Single)
            }
            // The cluster client's response timeout is set when the client is built (see
            // `Queue::connect_cluster`), long enough for the longest block.
            Target::Cluster(client) => client
                .get_async_connection()
                .await
                .map(BlockingConnection::Cluster),
        }
    }
}

/// Builds a cluster client whose response timeout allows blocking reads of `idle_wait`.
pub(crate) fn cluster_client(
    nodes: &[String],
    idle_wait: Duration,
) -> redis::RedisResult<ClusterClient> {
    ClusterClient::builder(nodes.to_vec())
        .response_timeout(RESPONSE_TIMEOUT.max(idle_wait + BLOCKING_SLACK))
        .connection_timeout(Duration::from_secs(5))
        .build()
}

impl ConnectionLike for SharedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            SharedConnection::Single(conn) => conn.req_packed_command(cmd),
            SharedConnection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            SharedConnection::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            SharedConnection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            SharedConnection::Single(conn) => conn.get_db(),
            SharedConnection::Cluster(conn) => conn.get_db(),
        }
    }
}

/// A connection used only for one worker's blocking reads.
pub(crate) enum BlockingConnection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl BlockingConnection {
    /// Blocks up to `wait` for a wake-up token on `signal`; true if one came.
    pub(crate) async fn wait(&mut self, signal: &str, wait: Duration) -> redis::RedisResult<bool> {
        // BLPOP takes seconds as a float; 0 would mean "forever".
        let seconds = wait.as_secs_f64().max(0.01);
        let mut cmd = redis::cmd("BLPOP");
        cmd.arg(signal).arg(seconds);
        let popped: Option<(String, String)> = match self {
            BlockingConnection::Single(conn) => cmd.query_async(conn).await?,
            BlockingConnection::Cluster(conn) => cmd.query_async(conn).await?,
        };
        Ok(popped.is_some())
    }
}

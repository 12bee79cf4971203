//! A Redis connection that is made lazily and heals itself.
//!
//! Binaries must start, answer `/healthz` and report "not ready" while Redis is down, then recover
//! by themselves when it returns: [`RedisLink::get`] hands out a multiplexed
//! [`ConnectionManager`] (which reconnects on its own once made), creating it on first use and
//! retrying creation on later calls if Redis was unreachable.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

/// A shareable, self-healing handle on one Redis server.
#[derive(Clone)]
pub struct RedisLink {
    client: redis::Client,
    manager: Arc<Mutex<Option<ConnectionManager>>>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection info may hold a password: show only the address.
        let addr = &self.client.get_connection_info().addr();
        f.debug_struct("RedisLink")
            .field("addr", addr)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// A link to `url`; no connection is made yet.
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        Ok(RedisLink {
            client: redis::Client::open(url)?,
            manager: Arc::new(Mutex::new(None)),
            timeout: Duration::from_secs(2),
        })
    }

    /// The client, for code that needs dedicated connections (blocking reads).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// A connection manager, made now if there is none yet.
    pub async fn get(&self) -> Result<ConnectionManager, redis::RedisError> {
        let mut slot = self.manager.lock().await;
        if let Some(manager) = slot.as_ref() {
            return Ok(manager.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(2);
        let manager = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        *slot = Some(manager.clone());
        Ok(manager)
    }

    /// PINGs Redis within the link's timeout.
    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        let mut conn = self.get().await?;
        let ping = redis::cmd("PING");
        match tokio::time::timeout(self.timeout, ping.query_async::<String>(&mut conn)).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "PING timed out",
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use conveyor_testkit::RedisServer;

    use super::*;

    #[tokio::test]
    async fn link_recovers_when_redis_comes_back() {
        let mut server = RedisServer::start().unwrap();
        let link = RedisLink::new(&server.url()).unwrap();
        server.stop();
        assert!(link.ping().await.is_err(), "down before first use");
        server.start_again().unwrap();
        // Poll until the link sees the server again (reconnects are asynchronous).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while link.ping().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "link never recovered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.stop();
        assert!(link.ping().await.is_err(), "down again");
        server.start_again().unwrap();
        while link.ping().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "link never recovered twice"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

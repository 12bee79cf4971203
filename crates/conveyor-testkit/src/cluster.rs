//! A local three-node Redis Cluster for tests of cluster support.
//!
//! Three `redis-server` processes with `cluster-enabled yes` on free loopback ports (each in its
//! own directory), joined with `redis-cli --cluster create` and no replicas; every node is
//! killed when the cluster is dropped. A node's cluster bus listens on its port + 10000;
//! a node whose port leaves no valid bus port is simply started again on another port.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::{RedisServer, RedisServerOptions, TestkitError};

/// A running three-master Redis Cluster.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

const NODES: usize = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(20);

impl RedisCluster {
    /// Starts three nodes, creates the cluster and waits until every slot is served.
    pub fn start() -> Result<Self, TestkitError> {
        let mut nodes = Vec::with_capacity(NODES);
        while nodes.len() < NODES {
            nodes.push(start_node()?);
        }
        let cluster = RedisCluster { nodes };
        cluster.create()?;
        cluster.wait_until_ready()?;
        Ok(cluster)
    }

    /// `redis://127.0.0.1:PORT` of every node, to seed a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port()))
            .collect()
    }

    /// The nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    fn create(&self) -> Result<(), TestkitError> {
        let mut command = Command::new("redis-cli");
        command.arg("--cluster").arg("create");
        for port in self.ports() {
            command.arg(format!("127.0.0.1:{port}"));
        }
        let output = command
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()?;
        if output.status.success() {
            Ok(())
        } else {
            Err(TestkitError::NotReady {
                port: self.nodes[0].port(),
                waited: Duration::ZERO,
                detail: format!(
                    "redis-cli --cluster create failed: {}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            })
        }
    }

    fn wait_until_ready(&self) -> Result<(), TestkitError> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < READY_TIMEOUT {
            let ready = self.nodes.iter().all(|node| {
                let info = node
                    .client()
                    .get_connection_with_timeout(Duration::from_millis(200))
                    .and_then(|mut conn| {
                        redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut conn)
                    });
                match info {
                    Ok(info) => {
                        let ok = info.contains("cluster_state:ok")
                            && info.contains("cluster_slots_ok:16384")
                            && info.contains(&format!("cluster_known_nodes:{NODES}"));
                        if !ok {
                            last = info;
                        }
                        ok
                    }
                    Err(err) => {
                        last = err.to_string();
                        false
                    }
                }
            });
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(TestkitError::NotReady {
            port: self.nodes[0].port(),
            waited: started.elapsed(),
            detail: format!("cluster did not become ready: {last}"),
        })
    }
}

/// Starts one cluster-enabled node. redis-server refuses ports whose bus port (+10000) is not a
/// valid port, and fails if the bus port is taken; both just mean "try another free port".
fn start_node() -> Result<RedisServer, TestkitError> {
    let options = RedisServerOptions {
        extra_args: vec![
            "--cluster-enabled".into(),
            "yes".into(),
            "--cluster-config-file".into(),
            "nodes.conf".into(),
            "--cluster-node-timeout".into(),
            "5000".into(),
        ],
        ..RedisServerOptions::default()
    };
    let mut last_error = None;
    for _ in 0..10 {
        match RedisServer::start_with(options.clone()) {
            Ok(server) => return Ok(server),
            Err(err @ TestkitError::RedisMissing) => return Err(err),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or(TestkitError::NotReady {
        port: 0,
        waited: Duration::ZERO,
        detail: "no cluster node could be started".to_owned(),
    }))
}

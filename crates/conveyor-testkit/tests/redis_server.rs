//! The testkit's own tests: a real server starts, tests are isolated, restarts keep AOF data.

use conveyor_testkit::{RedisServer, RedisServerOptions};
use redis::Commands;

#[test]
fn starts_and_answers_ping() {
    let server = RedisServer::start().expect("redis-server starts");
    let mut conn = server.client().get_connection().unwrap();
    let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    assert_eq!(pong, "PONG");
    assert!(server.url().starts_with("redis://127.0.0.1:"));
}

#[test]
fn parallel_servers_do_not_share_keys() {
    // Start several servers at once from threads, as parallel tests would.
    let servers: Vec<RedisServer> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4).map(|_| scope.spawn(RedisServer::start)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    let mut ports: Vec<_> = servers.iter().map(RedisServer::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), servers.len(), "each test gets its own server");

    for (i, server) in servers.iter().enumerate() {
        let mut conn = server.client().get_connection().unwrap();
        let _: () = conn.set("owner", i).unwrap();
    }
    for (i, server) in servers.iter().enumerate() {
        let mut conn = server.client().get_connection().unwrap();
        let owner: usize = conn.get("owner").unwrap();
        assert_eq!(owner, i);
        let keys: usize = redis::cmd("DBSIZE").query(&mut conn).unwrap();
        assert_eq!(keys, 1);
    }
}

#[test]
fn restart_with_aof_keeps_data() {
    let mut server = RedisServer::start_persistent().unwrap();
    let port = server.port();
    {
        let mut conn = server.client().get_connection().unwrap();
        let _: () = conn.set("survives", "yes").unwrap();
        let _: () = conn.rpush("list", &[1, 2, 3]).unwrap();
    }
    let old_pid = server.pid();
    server.restart().unwrap();
    assert_ne!(server.pid(), old_pid, "a new process runs");
    assert_eq!(server.port(), port, "clients reconnect to the same address");
    let mut conn = server.client().get_connection().unwrap();
    let value: String = conn.get("survives").unwrap();
    assert_eq!(value, "yes");
    let list: Vec<u32> = conn.lrange("list", 0, -1).unwrap();
    assert_eq!(list, [1, 2, 3]);
}

#[test]
fn restart_without_persistence_loses_data() {
    let mut server = RedisServer::start().unwrap();
    {
        let mut conn = server.client().get_connection().unwrap();
        let _: () = conn.set("gone", 1).unwrap();
    }
    server.restart().unwrap();
    let mut conn = server.client().get_connection().unwrap();
    let value: Option<String> = conn.get("gone").unwrap();
    assert_eq!(value, None);
}

#[test]
fn stopped_server_refuses_then_comes_back() {
    let mut server = RedisServer::start().unwrap();
    server.stop();
    assert!(server.client().get_connection().is_err());
    server.start_again().unwrap();
    let mut conn = server.client().get_connection().unwrap();
    let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn dropping_the_server_kills_it() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    drop(server);
    let client = redis::Client::open(url).unwrap();
    assert!(
        client.get_connection().is_err(),
        "the port no longer answers"
    );
}

#[test]
fn extra_args_are_passed() {
    let server = RedisServer::start_with(RedisServerOptions {
        extra_args: vec!["--maxmemory".into(), "12mb".into()],
        ..Default::default()
    })
    .unwrap();
    let mut conn = server.client().get_connection().unwrap();
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query(&mut conn)
        .unwrap();
    assert_eq!(config[1], (12 * 1024 * 1024).to_string());
}

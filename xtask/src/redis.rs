//! Redis for the test suite: the machine's server (or `TEST_REDIS_URL`), or, when none answers, a
//! private `redis-server` started for the run. Fault tests start their own `redis-server`
//! processes, so the binary is installed when missing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::run::{self, cmd, is_root};

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The Redis the tests use; a private server started here stops when this is dropped.
pub struct TestRedis {
    pub url: String,
    child: Option<Child>,
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.kill());
            drop(child.wait());
        }
    }
}

pub fn for_tests() -> Result<TestRedis, String> {
    ensure_redis_server()?;
    let configured = std::env::var("TEST_REDIS_URL").ok();
    let url = configured.clone().unwrap_or_else(|| DEFAULT_URL.to_owned());
    if answers_ping(&url) {
        println!("Redis is answering: {url}");
        return Ok(TestRedis { url, child: None });
    }
    if configured.is_some() {
        return Err(format!("TEST_REDIS_URL={url} does not answer PING"));
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    println!("no Redis at {DEFAULT_URL}; starting a private redis-server on port {port}");
    let child = cmd("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server: {e}"))?;
    let redis = TestRedis {
        url: format!("redis://127.0.0.1:{port}"),
        child: Some(child),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answers_ping(&redis.url) {
        if Instant::now() > deadline {
            return Err("the private redis-server did not start within 10 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(redis)
}

fn ensure_redis_server() -> Result<(), String> {
    if run::available("redis-server") {
        return Ok(());
    }
    if is_root() && run::available("apt-get") {
        return run::run(
            cmd("apt-get")
                .args(["install", "-y", "--no-install-recommends", "redis-server"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        );
    }
    Err(
        "redis-server is missing (the fault tests start their own): \
         `sudo apt-get install redis-server` or `brew install redis`"
            .to_owned(),
    )
}

/// `redis://[user:pass@]host[:port][/db]` → whether a `PING` gets `+PONG` within a second.
fn answers_ping(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, rest)| rest) else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let address = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    };
    let Some(address) = address.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let timeout = Duration::from_secs(1);
    let Ok(mut stream) = TcpStream::connect_timeout(&address, timeout) else {
        return false;
    };
    drop(stream.set_read_timeout(Some(timeout)));
    let mut reply = [0_u8; 64];
    // A server with a password answers -NOAUTH, which still proves a Redis is there.
    stream.write_all(b"PING\r\n").is_ok()
        && stream
            .read(&mut reply)
            .is_ok_and(|n| reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH"))
}

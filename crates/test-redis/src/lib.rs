#![doc = include_str!("../README.md")]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// URL of the shared Redis: `TEST_REDIS_URL`, else `redis://127.0.0.1:6379`.
#[must_use]
pub fn shared_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other test uses, so tests on the shared server never see each other's keys.
#[must_use]
pub fn unique_prefix(test: &str) -> String {
    format!("test:{test}:{}", uuid::Uuid::new_v4().simple())
}

/// A private `redis-server` on a free loopback port, persisting nothing, stopped when dropped.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    paused: bool,
}

impl RedisServer {
    /// Starts a server and waits until it accepts connections.
    ///
    /// # Panics
    /// When `redis-server` is not installed or does not start within five seconds.
    #[must_use]
    pub fn start() -> Self {
        let port = free_port();
        let mut server = Self {
            port,
            child: None,
            paused: false,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let child = Command::new(&binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} (install Debian's redis-server package): {e}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        while TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {address} within 5 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "kill -{signal} {} failed",
                child.id()
            );
        }
    }

    /// Freezes the server (`kill -STOP`): connections stay open and nothing answers.
    pub fn pause(&mut self) {
        self.signal("STOP");
        self.paused = true;
    }

    /// Thaws a paused server (`kill -CONT`).
    pub fn resume(&mut self) {
        self.signal("CONT");
        self.paused = false;
    }

    /// Kills the server (SIGKILL) and waits for it to exit: connections are reset, the port
    /// is closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.paused = false;
            drop(child.kill());
            drop(child.wait());
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

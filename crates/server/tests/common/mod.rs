//! The `sovereign` binary, run as an operator would: with a clean environment, and served with
//! its JSON log lines on a channel.

#![allow(dead_code, reason = "each test file uses part of the harness")]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly, like the tests that call them"
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_sovereign");
pub const STRONG_KEY: &str = "q8Jx2mV7pL0sT4wZ9cR1nB6yK3hD5fGaE8uI2oP7";

/// The binary with a clean environment (and a working directory without `.env`).
pub fn sovereign(vars: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .current_dir(std::env::temp_dir())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        // Tests run side by side: no fixed metrics port.
        .env("METRICS_ADDR", "127.0.0.1:0")
        .envs(vars.iter().copied());
    c
}

/// Runs the binary with `input` on its standard input.
pub fn run_with_stdin(vars: &[(&str, &str)], args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = sovereign(vars)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn run(vars: &[(&str, &str)], args: &[&str]) -> Output {
    sovereign(vars)
        .args(args)
        .output()
        .expect("the binary runs")
}

/// A served process whose JSON log lines arrive on a channel.
pub struct Served {
    pub child: Option<Child>,
    pub lines: mpsc::Receiver<Value>,
}

impl Served {
    pub fn start(vars: &[(&str, &str)]) -> Self {
        let mut child = sovereign(vars)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("a log line that is not JSON: {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Self {
            child: Some(child),
            lines,
        }
    }

    /// The first log line matching `predicate` within 10 seconds.
    pub fn wait_for(&self, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if predicate(&line) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no log line for {what}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
        }
    }
}

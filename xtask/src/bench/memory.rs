//! `bench memory`: the resident memory of one instance under sustained load when nobody scrapes
//! `/metrics` — with the listener off (`METRICS_ADDR=off`) and on. A server that kept every
//! histogram sample until a scrape grew by tens of MiB a minute here; the recorder's upkeep thread
//! keeps it flat. Sampled from `/proc/<pid>/status`, so Linux only.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{Server, ensure_wrk, login, migrate, post_json, sovereign};
use crate::dev;
use crate::run::{self, cargo, cmd};

/// How long the load runs in each configuration (`BENCH_MEMORY_SECONDS`).
const DEFAULT_SECONDS: u64 = 120;
/// How often the resident memory is read.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Growth after the first minute beyond which memory is not flat.
const FLAT_MIB: f64 = 8.0;

pub fn memory() -> Result<(), String> {
    ensure_wrk()?;
    run::run(cargo().args(["build", "--release", "--locked", "--package", "sovereign"]))?;
    let urls = dev::database_urls()?;
    migrate(&urls)?;
    dev::ensure_dev_role()?;
    let seconds = std::env::var("BENCH_MEMORY_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECONDS);
    let port = 18_000 + (std::process::id() % 1000) as u16;
    let log = run::state_dir().join("bench-server.log");
    let mut verdicts = Vec::new();
    for (label, metrics_addr) in [
        ("METRICS_ADDR=off", "off"),
        ("metrics listener on, never scraped", "127.0.0.1:0"),
    ] {
        let mut command = sovereign(&urls, port, "warn");
        command
            .env("METRICS_ADDR", metrics_addr)
            .env("RATE_LIMIT_ENABLED", "false")
            .env("BCRYPT_COST", "10")
            .env(
                "SECRET_KEY",
                "bench-only secret key, at least thirty-two bytes long",
            );
        let server = Server::start(&mut command, port, &log)?;
        let pid = server.0.id();
        let email = format!(
            "bench-memory-{}-{}@example.com",
            std::process::id(),
            verdicts.len()
        );
        let credentials =
            format!(r#"{{"email":"{email}","password":"correct horse battery staple"}}"#);
        let (status, body) = post_json(port, "/api/v1/auth/register", &credentials)?;
        if status != 202 {
            return Err(format!("register answered {status}: {body}"));
        }
        let token = login(port, &credentials)?;
        let load = cmd("wrk")
            .args(["-t2", "-c64", &format!("-d{seconds}s"), "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("http://127.0.0.1:{port}/api/v1/users/me"))
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start wrk: {e}"))?;
        let started = Instant::now();
        let mut samples = vec![(0, resident_mib(pid)?)];
        while started.elapsed() < Duration::from_secs(seconds) {
            std::thread::sleep(SAMPLE_EVERY);
            samples.push((started.elapsed().as_secs(), resident_mib(pid)?));
        }
        let out = load
            .wait_with_output()
            .map_err(|e| format!("wait for wrk: {e}"))?;
        let out = String::from_utf8_lossy(&out.stdout);
        let requests = super::parse_wrk(&out)?.requests_per_sec;
        // Idle afterwards: what the process keeps once the load is gone.
        std::thread::sleep(SAMPLE_EVERY);
        let idle = resident_mib(pid)?;
        drop(server);

        println!(
            "\n{label}: GET /api/v1/users/me at 64 connections, {seconds} s, {requests:.0} req/s"
        );
        println!("{:>8} {:>12}", "second", "RSS (MiB)");
        for (second, mib) in &samples {
            println!("{second:>8} {mib:>12.1}");
        }
        println!("{:>8} {idle:>12.1}", "idle");
        let after_warm_up = samples
            .iter()
            .filter(|(second, _)| *second >= 60)
            .map(|(_, mib)| *mib)
            .collect::<Vec<_>>();
        let growth = match (after_warm_up.first(), after_warm_up.last()) {
            (Some(first), Some(last)) => last - first,
            _ => 0.0,
        };
        let flat =
            growth <= FLAT_MIB && idle <= after_warm_up.first().copied().unwrap_or(idle) + FLAT_MIB;
        println!(
            "growth after the first minute: {growth:+.1} MiB (flat means at most {FLAT_MIB} MiB) -> {}",
            if flat { "flat" } else { "GROWING" }
        );
        verdicts.push((label, flat));
    }
    if verdicts.iter().all(|(_, flat)| *flat) {
        Ok(())
    } else {
        Err("resident memory grew under sustained load without a scraper".to_owned())
    }
}

/// `VmRSS` of a process, in MiB.
fn resident_mib(pid: u32) -> Result<f64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

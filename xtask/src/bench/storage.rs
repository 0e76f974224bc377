//! `bench storage`: two release servers — one on the local disk, one on S3 (`moto_server` on
//! loopback) — and the client `examples/storage_bench`: a large object through the API beside
//! the raw backend in the same run, the server's memory while 8 clients upload at once, and
//! listings of 1,000 keys in a bucket of 1,000,000 objects.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{Server, login, release_with_example, sovereign, superuser};
use crate::run::{self, cmd, root};

const BUCKET: &str = "sovereign";

/// `moto_server` on `port` with the bucket made; stopped when dropped.
struct Moto(Child);

impl Moto {
    fn start(port: u16) -> Result<Self, String> {
        let python = crate::python::for_tests()?;
        let moto = python.with_file_name("moto_server");
        let child = cmd(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", moto.display()))?;
        let moto = Self(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // Making the bucket is also the readiness check.
            let made = cmd("curl")
                .args(["-sf", "-X", "PUT"])
                .arg(format!("http://127.0.0.1:{port}/{BUCKET}"))
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if made {
                return Ok(moto);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err("moto_server did not start".to_owned())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn storage() -> Result<(), String> {
    let urls = release_with_example("storage_bench")?;
    let base = 18_500 + (std::process::id() % 400) as u16;
    let (fs_port, s3_port, moto_port) = (base, base + 1, base + 2);
    let _moto = Moto::start(moto_port)?;
    let moto = format!("http://127.0.0.1:{moto_port}");
    let dir = run::state_dir().join(format!("bench-storage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let credentials = superuser(&urls, "storage")?;
    let server = |port: u16| {
        let mut c = sovereign(&urls, port, "warn");
        c.env("RATE_LIMIT_ENABLED", "false")
            .env(
                "SECRET_KEY",
                "bench-only secret key, at least thirty-two bytes long",
            )
            .env("STORAGE_QUOTA_BYTES", (64u64 << 30).to_string())
            .env("STORAGE_QUOTA_OBJECTS", "10000000")
            .env("METRICS_ADDR", "off");
        c
    };
    let mut on_disk = server(fs_port);
    on_disk.env("STORAGE_DIR", &dir);
    let mut on_s3 = server(s3_port);
    on_s3
        .env("STORAGE_BACKEND", "s3")
        .env("S3_ENDPOINT", &moto)
        .env("S3_BUCKET", BUCKET)
        .env("S3_ACCESS_KEY_ID", "bench")
        .env("S3_SECRET_ACCESS_KEY", "bench");
    let fs_server = Server::start(
        &mut on_disk,
        fs_port,
        &run::state_dir().join("bench-storage-fs.log"),
    )?;
    let s3_server = Server::start(
        &mut on_s3,
        s3_port,
        &run::state_dir().join("bench-storage-s3.log"),
    )?;
    let token = login(fs_port, &credentials)?;
    let result = run::run(
        cmd(root().join("target/release/examples/storage_bench"))
            .env("BENCH_TOKEN", &token)
            .env("BENCH_FS_URL", format!("http://127.0.0.1:{fs_port}"))
            .env("BENCH_FS_PID", fs_server.pid().to_string())
            .env("BENCH_FS_DIR", &dir)
            .env("BENCH_S3_URL", format!("http://127.0.0.1:{s3_port}"))
            .env("BENCH_S3_PID", s3_server.pid().to_string())
            .env("BENCH_S3_ENDPOINT", &moto)
            .env("BENCH_S3_BUCKET", BUCKET)
            .env("BENCH_OWNER_URL", &urls.owner),
    );
    drop(fs_server);
    drop(s3_server);
    std::fs::remove_dir_all(&dir).ok();
    result?;
    println!(
        "\nThe client runs on the same 2 cores as the server (and, for S3, as moto, which keeps \
         objects in memory): compare the ratios within this run, not the absolute numbers. \
         Targets: API ≥ 0.8× the raw backend for large objects; RSS growth < 64 MiB while 8 \
         clients upload; listing p99 < 20 ms."
    );
    Ok(())
}

//! `cargo xtask web`: the TypeScript client (`clients/typescript`) and the example app
//! (`examples/web`). Installs their packages from the committed lockfiles, builds both, runs the
//! client's unit tests, then — against a real server on a fresh database, with Redis — the
//! Node tests (API keys) and the browser tests (Debian's Chromium driven by playwright-core).

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::bench::Server;
use crate::run::{self, cargo, cmd, is_root, root};
use crate::{dev, pg, redis};

pub const CLIENT_DIR: &str = "clients/typescript";
pub const EXAMPLE_DIR: &str = "examples/web";
/// The database the browser tests' server runs on, recreated for every run.
const DATABASE: &str = "sovereign_web";
const ADMIN_EMAIL: &str = "admin@example.com";
const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// Everything: packages, builds, unit tests, Node and browser tests.
pub fn run() -> Result<(), String> {
    let chromium = chromium()?;
    build()?;
    run::run(npm(CLIENT_DIR).args(["test"]))?;
    run::run(cargo().args(["build", "--locked", "-p", "sovereign"]))?;
    let binary = target_dir().join("debug").join("sovereign");
    let redis = redis::for_tests()?;
    let ports = [free_port()?, free_port()?, free_port()?, free_port()?];
    let [api, metrics, app, other] = ports;
    let server = start_server(&binary, &redis.url, [api, metrics, app, other])?;
    let env = [
        ("SOVEREIGN_URL", format!("http://127.0.0.1:{api}")),
        (
            "SOVEREIGN_METRICS_URL",
            format!("http://127.0.0.1:{metrics}/metrics"),
        ),
        ("SOVEREIGN_ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
        ("SOVEREIGN_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        (
            "EXAMPLE_DIST",
            root().join(EXAMPLE_DIR).join("dist").display().to_string(),
        ),
        ("APP_PORT", app.to_string()),
        ("OTHER_PORT", other.to_string()),
        ("CHROMIUM", chromium.display().to_string()),
        (
            "SCREENSHOT_DIR",
            target_dir().join("web-screenshots").display().to_string(),
        ),
    ];
    let node = run::run(npm(CLIENT_DIR).args(["run", "test:node"]).envs(env.clone()));
    let browser = run::run(npm(EXAMPLE_DIR).args(["run", "test:browser"]).envs(env));
    drop(server);
    node.and(browser)
}

/// Installs the packages (exact versions from the lockfiles) and builds the client and the app.
pub fn build() -> Result<(), String> {
    for dir in [CLIENT_DIR, EXAMPLE_DIR] {
        run::run(npm(dir).args(["ci", "--no-audit", "--no-fund"]))?;
    }
    run::run(npm(CLIENT_DIR).args(["run", "build"]))?;
    run::run(npm(EXAMPLE_DIR).args(["run", "build"]))
}

/// `npm` in one of the package directories.
pub fn npm(dir: &str) -> std::process::Command {
    let mut c = cmd("npm");
    c.current_dir(root().join(dir));
    c
}

/// Whether Node and npm are installed (a plain `cargo build` never needs them).
pub fn ensure_node() -> Result<(), String> {
    if run::available("node") && run::available("npm") {
        return Ok(());
    }
    Err(
        "Node.js 20.19 or later with npm is needed for the TypeScript client: \
         `sudo apt-get install nodejs npm`, or https://nodejs.org"
            .to_owned(),
    )
}

/// Debian's Chromium (Playwright's own browser download is not used), installed when missing.
fn chromium() -> Result<PathBuf, String> {
    ensure_node()?;
    if let Ok(path) = std::env::var("CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    let path = PathBuf::from("/usr/bin/chromium");
    if path.exists() {
        return Ok(path);
    }
    if !is_root() || !run::available("apt-get") {
        return Err(
            "Chromium is missing: `sudo apt-get install chromium`, or set CHROMIUM to a \
                    Chromium or Chrome binary"
                .to_owned(),
        );
    }
    run::run(
        cmd("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends", "chromium"]),
    )?;
    Ok(path)
}

/// A fresh database, migrated, with a superadmin; the server on it with short-lived access
/// tokens (refresh paths get exercised), a small realtime history (recovery can fail on purpose)
/// and the example app's origin allowed.
fn start_server(binary: &Path, redis: &str, ports: [u16; 4]) -> Result<Server, String> {
    let [api, metrics, app, other] = ports;
    let cluster = pg::up()?;
    cluster.psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"),
    )?;
    cluster.ensure_database(DATABASE)?;
    let owner = cluster.url(DATABASE);
    run::run(
        cmd(binary)
            .arg("migrate")
            .env("DATABASE_URL", &owner)
            .env("DATABASE_OWNER_URL", &owner),
    )?;
    dev::ensure_dev_role()?;
    let runtime = format!(
        "postgres://{role}:{role}@127.0.0.1:{port}/{DATABASE}",
        role = dev::DEV_ROLE,
        port = cluster.port
    );
    run::run(
        cmd(binary)
            .args(["create-superuser", "--email", ADMIN_EMAIL])
            .env("SUPERUSER_PASSWORD", ADMIN_PASSWORD)
            .env("DATABASE_URL", &runtime)
            .env("DATABASE_OWNER_URL", &owner),
    )?;
    let log = target_dir().join("web-server.log");
    println!("the server's log: {}", log.display());
    Server::start(
        cmd(binary)
            .arg("serve")
            .env("DATABASE_URL", &runtime)
            .env("DATABASE_OWNER_URL", &owner)
            .env("REDIS_URL", redis)
            .env("PORT", api.to_string())
            .env("METRICS_ADDR", format!("127.0.0.1:{metrics}"))
            // The app on 127.0.0.1 (most tests) and on localhost (passkeys: browsers accept no IP
            // address as a relying party id); localhost:{other} is allowed to call the API but is
            // not a passkey origin.
            .env(
                "BACKEND_CORS_ORIGINS",
                format!("http://127.0.0.1:{app},http://localhost:{app},http://localhost:{other}"),
            )
            .env("WEBAUTHN_RP_ID", "localhost")
            .env("WEBAUTHN_ORIGINS", format!("http://localhost:{app}"))
            .env("API_PUBLIC_URL", format!("http://127.0.0.1:{api}"))
            .env("AUTH_REDIRECT_URLS", format!("http://127.0.0.1:{app}/"))
            .env("AUTH_PROVIDER_TIMEOUT_SECONDS", "2")
            .env("ACCESS_TOKEN_EXPIRE_MINUTES", "1")
            .env("REALTIME_HISTORY_SIZE", "5")
            .env("RATE_LIMIT_AUTH", "1000/minute")
            .env("RATE_LIMIT_ACCOUNT", "1000/minute")
            .env("RATE_LIMIT_API", "10000/minute")
            .env("CACHE_PREFIX", format!("web{}", std::process::id()))
            .env("LOG_FORMAT", "json"),
        api,
        &log,
    )
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), Into::into)
}

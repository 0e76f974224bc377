//! The project-local PostgreSQL cluster and the pgvector extension.
//!
//! The cluster lives in `.sovereign/pg` (or `SOVEREIGN_PG_DIR`), listens on 127.0.0.1 port 55432
//! (the next free port when that one is taken, or `SOVEREIGN_PG_PORT`) with trust authentication
//! for local connections only, and uses the installed PostgreSQL binaries (`pg_config --bindir`).
//! PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run::{self, cmd, is_root, output};

const DEFAULT_PORT: u16 = 55432;
/// The superuser `initdb` creates.
pub const SUPERUSER: &str = "postgres";
/// The system user owning the cluster when we run as root.
const SYSTEM_USER: &str = "postgres";

/// A running local cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub port: u16,
    bindir: PathBuf,
}

impl Cluster {
    /// URL of the superuser on database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// URL of the superuser on the maintenance database.
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// Runs one SQL statement with psql as the superuser; returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        output(
            cmd(self.bindir.join("psql"))
                .env("PGOPTIONS", "--client-min-messages=warning")
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-d"])
                .arg(self.url(db))
                .args(["-c", sql]),
        )
    }

    /// Creates database `db` when missing.
    pub fn ensure_database(&self, db: &str) -> Result<(), String> {
        let exists = self.psql(
            "postgres",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{db}'"),
        )?;
        if exists.trim() != "1" {
            self.psql("postgres", &format!("CREATE DATABASE {db}"))?;
        }
        Ok(())
    }
}

/// The port from `SOVEREIGN_PG_PORT`; else the port an existing cluster was created with; else
/// the first free port from 55432 up.
fn port(data: &Path) -> Result<u16, String> {
    if let Ok(p) = std::env::var("SOVEREIGN_PG_PORT") {
        return p
            .parse()
            .map_err(|_| format!("SOVEREIGN_PG_PORT is not a port: {p}"));
    }
    let conf = fs::read_to_string(data.join("postgresql.conf")).unwrap_or_default();
    let configured = conf
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("port = "))
        .and_then(|p| p.trim().parse().ok());
    if let Some(port) = configured {
        return Ok(port);
    }
    (DEFAULT_PORT..DEFAULT_PORT + 100)
        .find(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
        .ok_or_else(|| format!("no free port from {DEFAULT_PORT}; set SOVEREIGN_PG_PORT"))
}

/// `SOVEREIGN_PG_DIR`, else `.sovereign/pg` in the checkout. As root, the cluster belongs to the
/// `postgres` user; when that user cannot reach the checkout (say, under `/root`), the cluster
/// lives in `/var/tmp/sovereign/<checkout hash>/pg` instead.
fn cluster_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SOVEREIGN_PG_DIR") {
        return PathBuf::from(dir);
    }
    let root = run::root();
    let reachable = !is_root()
        || cmd("runuser")
            .args(["-u", SYSTEM_USER, "--", "test", "-x"])
            .arg(&root)
            .status()
            .is_ok_and(|s| s.success());
    if reachable {
        return run::state_dir().join("pg");
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in root.to_string_lossy().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    PathBuf::from(format!("/var/tmp/sovereign/{hash:016x}/pg"))
}

fn pg_config(arg: &str) -> Result<String, String> {
    let out = Command::new("pg_config").arg(arg).output().map_err(|_| {
        "PostgreSQL is not installed (no pg_config on PATH). Install the server, e.g. \
         `apt-get install postgresql` on Debian/Ubuntu or `brew install postgresql@16` on macOS, \
         or set DATABASE_URL (and TEST_DATABASE_URL for tests) to an existing server."
            .to_owned()
    })?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn bindir() -> Result<PathBuf, String> {
    Ok(PathBuf::from(pg_config("--bindir")?))
}

/// Runs a PostgreSQL server program as the cluster's owner.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = cmd("runuser");
        c.args(["-u", SYSTEM_USER, "--"]).arg(program);
        c
    } else {
        cmd(program)
    }
}

/// The administrator URL tests create their databases with: `TEST_DATABASE_URL`, or the
/// project-local cluster (started, and pgvector installed, when needed).
pub fn test_admin_url() -> Result<String, String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) => Ok(url),
        Err(_) => Ok(up()?.admin_url()),
    }
}

/// Starts the local cluster (creating it and installing pgvector first when needed).
pub fn up() -> Result<Cluster, String> {
    ensure_pgvector()?;
    let bindir = bindir()?;
    let dir = cluster_dir();
    let data = dir.join("data");
    let port = port(&data)?;
    let socket_dir = dir.join("run");
    if !data.join("PG_VERSION").exists() {
        init_cluster(&bindir, &dir, &data, &socket_dir, port)?;
    }
    let cluster = Cluster { port, bindir };
    if !is_running(&cluster.bindir, &data) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Err(format!(
                "port {port} is already in use (another checkout's cluster? `cargo xtask db down` \
                 there), so the cluster in {} cannot start; set SOVEREIGN_PG_PORT to a free port",
                dir.display()
            ));
        }
        run::run(
            as_owner(&cluster.bindir.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("postgres.log"))
                .args(["-w", "-t", "60", "start"]),
        )
        .map_err(|e| format!("{e}; see {}", dir.join("postgres.log").display()))?;
    }
    Ok(cluster)
}

fn init_cluster(
    bindir: &Path,
    dir: &Path,
    data: &Path,
    socket_dir: &Path,
    port: u16,
) -> Result<(), String> {
    fs::create_dir_all(socket_dir).map_err(|e| format!("create {}: {e}", socket_dir.display()))?;
    if is_root() {
        run::run(
            cmd("chown")
                .args(["-R", &format!("{SYSTEM_USER}:")])
                .arg(dir),
        )?;
        run::run(
            cmd("runuser")
                .args(["-u", SYSTEM_USER, "--", "test", "-w"])
                .arg(dir),
        )
        .map_err(|_| {
            format!(
                "the `{SYSTEM_USER}` user cannot write to {}; set SOVEREIGN_PG_DIR to a \
                 directory it can reach",
                dir.display()
            )
        })?;
    }
    run::run(as_owner(&bindir.join("initdb")).arg("-D").arg(data).args([
        "-U",
        SUPERUSER,
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--no-locale",
    ]))?;
    // Local development and tests only: bound to loopback, trust authentication, and
    // durability traded for speed (a crash may lose the last transactions, never corrupt data).
    let conf = format!(
        "\n# Added by `cargo xtask db up`.\n\
         listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         unix_socket_directories = '{}'\n\
         max_connections = 300\n\
         synchronous_commit = off\n",
        socket_dir.display()
    );
    let conf_path = data.join("postgresql.conf");
    let mut text =
        fs::read_to_string(&conf_path).map_err(|e| format!("read {}: {e}", conf_path.display()))?;
    text.push_str(&conf);
    fs::write(&conf_path, text).map_err(|e| format!("write {}: {e}", conf_path.display()))
}

fn is_running(bindir: &Path, data: &Path) -> bool {
    as_owner(&bindir.join("pg_ctl"))
        .arg("-D")
        .arg(data)
        .arg("status")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops the local cluster.
pub fn down() -> Result<(), String> {
    let bindir = bindir()?;
    let data = cluster_dir().join("data");
    if !is_running(&bindir, &data) {
        println!("the local PostgreSQL cluster is not running");
        return Ok(());
    }
    run::run(
        as_owner(&bindir.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-m", "fast", "-w", "stop"]),
    )
}

/// Prints whether the local cluster exists and runs.
pub fn status() -> Result<(), String> {
    let bindir = bindir()?;
    let dir = cluster_dir();
    let data = dir.join("data");
    let port = port(&data)?;
    if !data.join("PG_VERSION").exists() {
        println!(
            "no local cluster yet ({} is empty); `cargo xtask db up` creates it",
            dir.display()
        );
    } else if is_running(&bindir, &data) {
        println!(
            "running: postgres://{SUPERUSER}@127.0.0.1:{port}/postgres (data in {})",
            data.display()
        );
    } else {
        println!(
            "stopped (data in {}); `cargo xtask db up` starts it",
            data.display()
        );
    }
    println!(
        "pgvector: {}",
        if pgvector_installed()? {
            "installed"
        } else {
            "not installed"
        }
    );
    Ok(())
}

fn pgvector_installed() -> Result<bool, String> {
    Ok(Path::new(&pg_config("--sharedir")?)
        .join("extension/vector.control")
        .exists())
}

/// Installs pgvector into the PostgreSQL that `pg_config` describes, when it is missing.
///
/// Debian 12 packages no pgvector, but Debian 13's source builds against it: fetch that source
/// with apt (signature-checked with the installed Debian keyring), build it, install it. Ubuntu
/// packages it as `postgresql-<N>-pgvector`. Elsewhere, say exactly what to run.
pub fn ensure_pgvector() -> Result<(), String> {
    if pgvector_installed()? {
        return Ok(());
    }
    let version = pg_config("--version")?;
    let major = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').next())
        .unwrap_or("")
        .to_owned();
    let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let manual = format!(
        "pgvector is not installed for PostgreSQL {major}. Install it, then run this again:\n  \
         Ubuntu:  sudo apt-get install postgresql-{major}-pgvector\n  \
         macOS:   brew install pgvector\n  \
         source:  git clone --branch v0.8.0 https://github.com/pgvector/pgvector && \
         cd pgvector && make && sudo make install"
    );
    if !is_root() {
        return Err(manual);
    }
    println!("pgvector is missing for PostgreSQL {major}; installing it");
    let is_ubuntu = os_release.lines().any(|l| l == "ID=ubuntu");
    let is_debian = os_release.lines().any(|l| l == "ID=debian");
    if is_ubuntu {
        run::run(cmd("apt-get").args(["install", "-y", &format!("postgresql-{major}-pgvector")]))?;
    } else if is_debian {
        build_pgvector_from_debian_source(&major)?;
    } else {
        return Err(manual);
    }
    if pgvector_installed()? {
        Ok(())
    } else {
        Err(format!(
            "pgvector still missing after installing it.\n{manual}"
        ))
    }
}

fn build_pgvector_from_debian_source(major: &str) -> Result<(), String> {
    let apt_env = [("DEBIAN_FRONTEND", "noninteractive")];
    run::run(
        cmd("apt-get")
            .envs(apt_env)
            .args(["install", "-y", "--no-install-recommends"])
            .args([
                format!("postgresql-server-dev-{major}"),
                "make".into(),
                "gcc".into(),
            ]),
    )?;
    let mirror = debian_mirror()?;
    let work = run::state_dir().join("pgvector-build");
    let _ = fs::remove_dir_all(&work);
    let lists = work.join("lists");
    fs::create_dir_all(lists.join("partial"))
        .map_err(|e| format!("create {}: {e}", lists.display()))?;
    let sources = work.join("trixie-src.list");
    fs::write(
        &sources,
        format!(
            "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} trixie main\n"
        ),
    )
    .map_err(|e| format!("write {}: {e}", sources.display()))?;
    let apt_opts = [
        format!("Dir::Etc::SourceList={}", sources.display()),
        "Dir::Etc::SourceParts=/dev/null".to_owned(),
        format!("Dir::State::Lists={}", lists.display()),
    ];
    let apt = |args: &[&str]| {
        let mut c = cmd("apt-get");
        c.current_dir(&work).envs(apt_env);
        for o in &apt_opts {
            c.args(["-o", o]);
        }
        c.args(args);
        c
    };
    run::run(&mut apt(&["update"]))?;
    run::run(&mut apt(&["source", "--download-only", "pgvector"]))?;
    let tarball = fs::read_dir(&work)
        .map_err(|e| format!("read {}: {e}", work.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".orig.tar.gz"))
        })
        .ok_or("apt downloaded no pgvector source tarball")?;
    run::run(cmd("tar").current_dir(&work).arg("xzf").arg(&tarball))?;
    let source = fs::read_dir(&work)
        .map_err(|e| format!("read {}: {e}", work.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir() && p.join("vector.control").exists())
        .ok_or("the pgvector tarball has no source directory")?;
    let pg_config_path = bindir()?.join("pg_config");
    let pg_config_arg = format!("PG_CONFIG={}", pg_config_path.display());
    run::run(
        cmd("make")
            .current_dir(&source)
            .args(["-s", "-j2", &pg_config_arg]),
    )?;
    run::run(
        cmd("make")
            .current_dir(&source)
            .args(["-s", "install", &pg_config_arg]),
    )
}

/// The Debian mirror this machine's apt already uses (not the security archive).
fn debian_mirror() -> Result<String, String> {
    let mut candidates = Vec::new();
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        for entry in entries.filter_map(Result::ok) {
            if entry.path().extension().is_some_and(|e| e == "sources") {
                let text = fs::read_to_string(entry.path()).unwrap_or_default();
                for line in text.lines() {
                    if let Some(uris) = line.strip_prefix("URIs:") {
                        candidates.extend(uris.split_whitespace().map(str::to_owned));
                    }
                }
            }
        }
    }
    let list = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    for line in list.lines() {
        let mut words = line.split_whitespace().filter(|w| !w.starts_with('['));
        if words.next() == Some("deb")
            && let Some(uri) = words.next()
        {
            candidates.push(uri.to_owned());
        }
    }
    candidates
        .into_iter()
        .find(|uri| uri.contains("debian") && !uri.contains("security"))
        .ok_or_else(|| "cannot find the Debian mirror in /etc/apt/sources.list(.d)".to_owned())
}

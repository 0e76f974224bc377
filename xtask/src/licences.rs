//! Licences of what we depend on and ship: the policy check (`cargo deny check licenses` against
//! `deny.toml`) and the third-party notices shipped with the binary
//! (`deploy/THIRD-PARTY-NOTICES.txt`, written by cargo-about from `about.toml` and
//! `deploy/notices.hbs`, committed, and checked like the OpenAPI document).
//!
//! Both run offline: they read the crates in the local cargo registry and fetch nothing else (no
//! advisory database, no licence service, no git). Both tools are installed at pinned versions
//! when missing, once per machine.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::generated;
use crate::run::{self, cargo, root};

const NOTICES_FILE: &str = "deploy/THIRD-PARTY-NOTICES.txt";
const TEMPLATE: &str = "deploy/notices.hbs";
/// The crate whose dependencies are the shipped binary's.
const BINARY_MANIFEST: &str = "crates/server/Cargo.toml";

/// A cargo subcommand installed from crates.io at a pinned version: the notices must not change
/// with whichever cargo-about a machine happens to have.
struct Tool {
    name: &'static str,
    version: &'static str,
    features: &'static [&'static str],
}

const CARGO_DENY: Tool = Tool {
    name: "cargo-deny",
    version: "0.20.2",
    features: &[],
};
const CARGO_ABOUT: Tool = Tool {
    name: "cargo-about",
    version: "0.9.3",
    features: &["cli"],
};

/// `cargo xtask licences` (a step of `ci`): every crate's licence is allowed by `deny.toml`,
/// and the committed notices match Cargo.lock.
pub fn check() -> Result<(), String> {
    fetch()?;
    run::run(
        CARGO_DENY
            .command()?
            .args(["--offline", "--locked", "check", "licenses"]),
    )?;
    notices_fetched(true)
}

/// Writes (or with `check`, compares) the third-party notices.
pub fn notices(check: bool) -> Result<(), String> {
    fetch()?;
    notices_fetched(check)
}

fn notices_fetched(check: bool) -> Result<(), String> {
    let root = root();
    let generated = run::output(
        CARGO_ABOUT
            .command()?
            .args(["generate", "--frozen", "--fail", "--config"])
            .arg(root.join("about.toml"))
            .arg("--manifest-path")
            .arg(root.join(BINARY_MANIFEST))
            .arg(root.join(TEMPLATE)),
    )?;
    // A few crates ship their licence files with CRLF line ends; the notices use LF throughout.
    let generated = format!("{}\n", generated.replace('\r', "").trim_end());
    generated::compare_or_write(NOTICES_FILE, &generated, check, "cargo xtask notices")
}

/// Every crate of Cargo.lock into the local registry, for every platform: cargo-about reads the
/// manifests of all of them, not only of those this machine builds. It downloads from crates.io
/// as a build does, and does nothing when they are already here.
fn fetch() -> Result<(), String> {
    run::run(cargo().args(["fetch", "--locked"]))
}

impl Tool {
    /// The tool, run as cargo runs a subcommand (`cargo-deny deny …`).
    fn command(&self) -> Result<Command, String> {
        let mut command = run::cmd(self.program()?);
        command.arg(self.name.trim_start_matches("cargo-"));
        Ok(command)
    }

    /// The pinned version: the one on PATH if it is that version, else the project's own
    /// install in the cargo home, installed now when missing.
    fn program(&self) -> Result<PathBuf, String> {
        if self.version_of(self.name.as_ref()) {
            return Ok(PathBuf::from(self.name));
        }
        let dir = cargo_home()?
            .join("sovereign-tools")
            .join(format!("{}-{}", self.name, self.version));
        let program = dir.join("bin").join(self.name);
        if self.version_of(&program) {
            return Ok(program);
        }
        println!(
            "{} {} is missing; installing it (minutes of compiling, once per machine)",
            self.name, self.version
        );
        let mut install = cargo();
        install
            .args(["install", "--locked", self.name, "--version"])
            .arg(format!("={}", self.version))
            .arg("--root")
            .arg(&dir);
        if !self.features.is_empty() {
            install.args(["--features", &self.features.join(",")]);
        }
        run::run(&mut install)?;
        Ok(program)
    }

    /// Whether `program --version` says it is this tool at the pinned version.
    fn version_of(&self, program: &std::path::Path) -> bool {
        Command::new(program)
            .arg("--version")
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| {
                o.status.success()
                    && String::from_utf8_lossy(&o.stdout).trim()
                        == format!("{} {}", self.name, self.version)
            })
    }
}

/// `$CARGO_HOME`, or `~/.cargo`.
fn cargo_home() -> Result<PathBuf, String> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Ok(home.into());
    }
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cargo"))
        .ok_or_else(|| "neither CARGO_HOME nor HOME is set".to_owned())
}

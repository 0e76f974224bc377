//! Running commands, echoing each one first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Where local state lives (the PostgreSQL cluster, build caches): `.sovereign/`, ignored by git.
pub fn state_dir() -> PathBuf {
    root().join(".sovereign")
}

/// A command to run from the repository root.
pub fn cmd(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.current_dir(root());
    c
}

fn describe(c: &Command) -> String {
    let mut text = c.get_program().to_string_lossy().into_owned();
    for arg in c.get_args() {
        let arg = arg.to_string_lossy();
        if arg.contains(' ') || arg.is_empty() {
            text.push_str(&format!(" '{arg}'"));
        } else {
            text.push(' ');
            text.push_str(&arg);
        }
    }
    text
}

/// Runs to completion with inherited output; fails on a non-zero exit.
pub fn run(c: &mut Command) -> Result<(), String> {
    println!("$ {}", describe(c));
    let status = c
        .status()
        .map_err(|e| format!("cannot run `{}`: {e}", describe(c)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", describe(c)))
    }
}

/// Runs to completion and returns standard output; fails on a non-zero exit.
pub fn output(c: &mut Command) -> Result<String, String> {
    let out = c
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", describe(c)))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("`{}` failed ({})", describe(c), out.status))
    }
}

/// Whether a program can be started (`program --version` succeeds).
pub fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this process runs as root (package installs and `runuser` need it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The cargo that runs this xtask.
pub fn cargo() -> Command {
    cmd(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

//! `cargo xtask fuzz`: schemathesis over every operation of the OpenAPI document, against a
//! release build on the development database, signed in as a superadmin (with an API key, so
//! that the sign-out operations it tries cannot end its own session).
//!
//! It checks that the document says exactly what the server does: no response the document
//! does not describe, and no request the document allows that the server refuses — except the
//! rules listed in docs/development.md, which a schema cannot state. Not part of `cargo xtask
//! ci`: the refusals of those rules make its exit status non-zero by design; read the report.

use crate::bench::{self, Server};
use crate::{dev, python, run};

/// Pinned so a new release cannot change what is checked.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
const PORT: u16 = 18_097;

pub fn run() -> Result<(), String> {
    run::run(run::cargo().args(["build", "--release", "--locked", "--package", "sovereign"]))?;
    let urls = dev::database_urls()?;
    bench::migrate(&urls)?;
    dev::ensure_dev_role()?;
    let credentials = bench::superuser(&urls, "fuzz")?;
    let log = run::state_dir().join("fuzz-server.log");
    let _server = Server::start(
        bench::sovereign(&urls, PORT, "warn").env("RATE_LIMIT_ENABLED", "false"),
        PORT,
        &log,
    )?;
    let token = bench::login(PORT, &credentials)?;
    let (status, body) =
        bench::post_json_as(PORT, "/api/v1/api-keys", r#"{"name":"fuzz"}"#, Some(&token))?;
    let key = body
        .split(r#""key":""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .filter(|_| status == 201)
        .ok_or_else(|| format!("creating an API key answered {status}: {body}"))?;

    let st = schemathesis()?;
    let outcome = run::run(
        run::cmd(st)
            .arg("run")
            .arg(format!("http://127.0.0.1:{PORT}/api/v1/openapi.json"))
            .args(["--checks", "all", "--max-examples", "50", "--workers", "2"])
            .arg("--generation-deterministic")
            .arg("--header")
            .arg(format!("Authorization: Bearer {key}")),
    );
    println!("server log: {}", log.display());
    outcome
}

/// The `st` command of a virtual environment of its own (`.sovereign/fuzz-venv`).
fn schemathesis() -> Result<std::path::PathBuf, String> {
    let venv = run::state_dir().join("fuzz-venv");
    let st = venv.join("bin").join("st");
    let python = venv.join("bin").join("python");
    if !st.exists() {
        run::run(run::cmd("python3").args(["-m", "venv"]).arg(&venv))?;
        python::pip_install(&python, &[SCHEMATHESIS])?;
    }
    Ok(st)
}

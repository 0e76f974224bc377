//! `cargo xtask ci`: exactly what CI runs.

use std::time::Instant;

use crate::run::{self, cargo};
use crate::{deploy, generated, graph, licences, pg, python, redis, web};

pub fn run() -> Result<(), String> {
    let started = Instant::now();
    step("formatting", || {
        run::run(cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    step("crate graph", || graph::run(true))?;
    step("lints", || {
        run::run(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    let admin = step("database", pg::test_admin_url)?;
    let redis = step("redis", redis::for_tests)?;
    let python = step("python tools", python::for_tests)?;
    let model = step("embedding model", python::model_dir)?;
    let nginx = step("nginx", deploy::nginx)?;
    step("OpenAPI document", || generated::openapi(true))?;
    step("schema.rs", || generated::schema(true))?;
    step("licences", licences::check)?;
    step("tests", || {
        let mut tests = cargo();
        if run::available("cargo-nextest") {
            tests.args([
                "nextest",
                "run",
                "--workspace",
                "--locked",
                "--no-fail-fast",
            ]);
        } else {
            tests.args(["test", "--workspace", "--locked", "--no-fail-fast"]);
        }
        run::run(
            tests
                .env("TEST_DATABASE_URL", &admin)
                .env("TEST_REDIS_URL", &redis.url)
                .env("TEST_PYTHON", &python)
                .env("TEST_MODEL_DIR", &model)
                .env("TEST_NGINX", &nginx)
                .env("RUST_BACKTRACE", "1"),
        )
    })?;
    step(
        "TypeScript client and example app (browser tests)",
        web::run,
    )?;
    step("deployment artefacts", || {
        run::run(cargo().args(["build", "--locked", "-p", "sovereign"]))?;
        deploy::check(&target_dir().join("debug").join("sovereign"))
    })?;
    step("doc tests", || {
        run::run(
            cargo()
                .args(["test", "--workspace", "--doc", "--locked"])
                .env("TEST_DATABASE_URL", &admin)
                .env("TEST_REDIS_URL", &redis.url),
        )
    })?;
    println!("\nci passed in {:.0?}", started.elapsed());
    Ok(())
}

fn step<T>(name: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    println!("\n==> {name}");
    let started = Instant::now();
    let result = f().map_err(|e| format!("{name}: {e}"));
    println!("<== {name} ({:.1?})", started.elapsed());
    result
}

/// Where cargo puts build output.
fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| run::root().join("target"), Into::into)
}

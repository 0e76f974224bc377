//! Generated files that are committed and checked: `docs/openapi.json` and
//! `crates/db/src/schema.rs`.

use std::fs;

use crate::ci;
use crate::run::{self, cargo, output, root};

const OPENAPI_FILE: &str = "docs/openapi.json";
const SCHEMA_FILE: &str = "crates/db/src/schema.rs";
/// The diesel CLI version `schema` installs when `diesel` is missing.
const DIESEL_CLI_VERSION: &str = "~2.3";

/// Writes (or with `check`, compares) the OpenAPI document produced by `sovereign openapi`.
pub fn openapi(check: bool) -> Result<(), String> {
    let generated =
        output(cargo().args(["run", "--quiet", "--package", "sovereign", "--", "openapi"]))?;
    compare_or_write(OPENAPI_FILE, &generated, check, "cargo xtask openapi")
}

/// Writes (or with `check`, compares) `schema.rs` as `diesel print-schema` prints it for a
/// freshly migrated database.
pub fn schema(check: bool) -> Result<(), String> {
    ensure_diesel_cli()?;
    let admin = ci::test_admin_url()?;
    let scratch = format!("sovereign_schema_{}", std::process::id());
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base.to_owned())
        .ok_or("TEST_DATABASE_URL has no database name")?;
    let url = format!("{base}/{scratch}");
    let psql = |sql: &str| {
        run::run(
            run::cmd("psql")
                .env("PGOPTIONS", "--client-min-messages=warning")
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &admin, "-c", sql]),
        )
    };
    psql(&format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"))?;
    psql(&format!("CREATE DATABASE {scratch}"))?;
    let result = (|| {
        run::run(
            cargo()
                .args(["run", "--quiet", "--package", "sovereign", "--", "migrate"])
                .env("DATABASE_URL", &url)
                .env("DATABASE_OWNER_URL", &url),
        )?;
        output(run::cmd("diesel").args(["print-schema", "--database-url", &url]))
    })();
    psql(&format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"))?;
    compare_or_write(SCHEMA_FILE, &result?, check, "cargo xtask schema")
}

fn ensure_diesel_cli() -> Result<(), String> {
    if run::available("diesel") {
        return Ok(());
    }
    println!("the diesel CLI is missing; installing it (a few minutes, once)");
    run::run(cargo().args([
        "install",
        "diesel_cli",
        "--version",
        DIESEL_CLI_VERSION,
        "--no-default-features",
        "--features",
        "postgres",
        "--locked",
    ]))
}

pub fn compare_or_write(file: &str, generated: &str, check: bool, fix: &str) -> Result<(), String> {
    let path = root().join(file);
    let committed = fs::read_to_string(&path).unwrap_or_default();
    if committed == generated {
        println!("{file} is up to date");
        return Ok(());
    }
    if check {
        return Err(format!(
            "{file} is out of date with the code; run `{fix}` and commit the result"
        ));
    }
    fs::write(&path, generated).map_err(|e| format!("write {}: {e}", path.display()))?;
    println!("wrote {file}");
    Ok(())
}

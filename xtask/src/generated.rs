//! Generated files that are committed and checked: `docs/openapi.json`, the TypeScript client's
//! `clients/typescript/src/generated/` (from that document) and `crates/db/src/schema.rs` (the
//! crate graph in `docs/ARCHITECTURE.md` is `graph`'s).

use std::fs;
use std::path::Path;

use crate::run::{self, cargo, output, root};
use crate::{pg, web};

const OPENAPI_FILE: &str = "docs/openapi.json";
const SCHEMA_FILE: &str = "crates/db/src/schema.rs";
/// The diesel CLI version `schema` installs when `diesel` is missing.
const DIESEL_CLI_VERSION: &str = "~2.3";

/// The generated part of the TypeScript client.
const CLIENT_GENERATED: &str = "clients/typescript/src/generated";

/// Writes (or with `check`, compares) the OpenAPI document produced by `sovereign openapi`, then
/// the TypeScript client generated from it.
pub fn openapi(check: bool) -> Result<(), String> {
    let generated =
        output(cargo().args(["run", "--quiet", "--package", "sovereign", "--", "openapi"]))?;
    let document = compare_or_write(OPENAPI_FILE, &generated, check, "cargo xtask openapi");
    let client = typescript_client(&generated, check);
    document.and(client)
}

/// Runs the pinned generator (`clients/typescript/openapi-ts.config.mjs`) on `document`: into
/// the committed folder, or with `check` into a scratch one compared file by file.
fn typescript_client(document: &str, check: bool) -> Result<(), String> {
    web::ensure_node()?;
    if !root().join(web::CLIENT_DIR).join("node_modules").exists() {
        run::run(web::npm(web::CLIENT_DIR).args(["ci", "--no-audit", "--no-fund"]))?;
    }
    let scratch = std::env::temp_dir().join(format!("sovereign-client-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| format!("create {}: {e}", scratch.display()))?;
    let input = scratch.join("openapi.json");
    fs::write(&input, document).map_err(|e| format!("write {}: {e}", input.display()))?;
    let out = if check {
        scratch.join("generated")
    } else {
        root().join(CLIENT_GENERATED)
    };
    let result = run::run(
        web::npm(web::CLIENT_DIR)
            .args(["run", "--silent", "generate"])
            .env("SOVEREIGN_OPENAPI", &input)
            .env("SOVEREIGN_CLIENT_OUT", &out),
    )
    .and_then(|()| {
        if !check {
            println!("wrote {CLIENT_GENERATED}");
            return Ok(());
        }
        let committed = root().join(CLIENT_GENERATED);
        if same_tree(&out, &committed)? {
            println!("{CLIENT_GENERATED} is up to date");
            Ok(())
        } else {
            Err(format!(
                "{CLIENT_GENERATED} is out of date with the OpenAPI document; run `cargo xtask \
                 openapi` and commit the result"
            ))
        }
    });
    let _ = fs::remove_dir_all(&scratch);
    result
}

/// Whether two folders hold the same files with the same contents.
fn same_tree(a: &Path, b: &Path) -> Result<bool, String> {
    let (left, right) = (files(a)?, files(b)?);
    if left.len() != right.len() {
        return Ok(false);
    }
    for ((name_a, text_a), (name_b, text_b)) in left.iter().zip(&right) {
        if name_a != name_b || text_a != text_b {
            println!("differs: {}", name_a.display());
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every file under `dir`, by path relative to it, sorted, with its bytes.
fn files(dir: &Path) -> Result<Vec<(std::path::PathBuf, Vec<u8>)>, String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let entries = fs::read_dir(&next).map_err(|e| format!("read {}: {e}", next.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
                let relative = path
                    .strip_prefix(dir)
                    .map_err(|e| e.to_string())?
                    .to_path_buf();
                found.push((relative, bytes));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Writes (or with `check`, compares) `schema.rs` as `diesel print-schema` prints it for a
/// freshly migrated database.
pub fn schema(check: bool) -> Result<(), String> {
    ensure_diesel_cli()?;
    let admin = pg::test_admin_url()?;
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

/// Compares `generated` with the committed `file` (with `check`), or writes it.
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

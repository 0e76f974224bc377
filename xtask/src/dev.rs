//! `cargo xtask dev` and `cargo xtask migrate`.

use crate::pg;
use crate::run::{self, cargo};

/// The development database in the local cluster.
const DEV_DATABASE: &str = "sovereign";
/// The development server's login role: a member of `sovereign_app`, like production's.
pub const DEV_ROLE: &str = "sovereign_dev";
/// The example web app's development server (`npm run dev` in examples/web), allowed by CORS.
const EXAMPLE_ORIGINS: &str = "http://127.0.0.1:5173,http://localhost:5173";

/// Connection URLs for the server (runtime role) and for migrations (owner).
pub struct Urls {
    pub runtime: String,
    pub owner: String,
}

/// `DATABASE_URL` (and `DATABASE_OWNER_URL`) when set; otherwise the local cluster's
/// development database, created on first use.
pub fn database_urls() -> Result<Urls, String> {
    if let Ok(runtime) = std::env::var("DATABASE_URL") {
        let owner = std::env::var("DATABASE_OWNER_URL").unwrap_or_else(|_| runtime.clone());
        println!("using DATABASE_URL from the environment");
        return Ok(Urls { runtime, owner });
    }
    let cluster = pg::up()?;
    cluster.ensure_database(DEV_DATABASE)?;
    Ok(Urls {
        runtime: format!(
            "postgres://{DEV_ROLE}:{DEV_ROLE}@127.0.0.1:{}/{DEV_DATABASE}",
            cluster.port
        ),
        owner: cluster.url(DEV_DATABASE),
    })
}

/// Creates the development login role once migrations have created its group role.
pub fn ensure_dev_role() -> Result<(), String> {
    if std::env::var("DATABASE_URL").is_ok() {
        return Ok(());
    }
    let cluster = pg::up()?;
    cluster.psql(
        "postgres",
        &format!(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{DEV_ROLE}') THEN
                     CREATE ROLE {DEV_ROLE} LOGIN PASSWORD '{DEV_ROLE}'
                         NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS IN ROLE sovereign_app;
                 END IF;
             END $$"
        ),
    )?;
    Ok(())
}

fn sovereign(urls: &Urls, args: &[&str]) -> std::process::Command {
    let mut c = cargo();
    c.args(["run", "--quiet", "--package", "sovereign", "--"])
        .args(args)
        .env("DATABASE_URL", &urls.runtime)
        .env("DATABASE_OWNER_URL", &urls.owner);
    c
}

/// `cargo xtask create-superuser ARGS`: `sovereign create-superuser ARGS` against the development
/// database (standard input is passed through, for `--password-stdin`).
pub fn create_superuser(args: &[&str]) -> Result<(), String> {
    let urls = database_urls()?;
    let mut full = vec!["create-superuser"];
    full.extend_from_slice(args);
    run::run(&mut sovereign(&urls, &full))
}

/// `cargo xtask migrate [ARGS]`: `sovereign migrate ARGS` against the development database.
pub fn migrate(args: &[&str]) -> Result<(), String> {
    let urls = database_urls()?;
    let mut full = vec!["migrate"];
    full.extend_from_slice(args);
    run::run(&mut sovereign(&urls, &full))?;
    ensure_dev_role()
}

/// `cargo xtask dev`: database, migrations, then the server with docs on, until Ctrl-C.
pub fn run() -> Result<(), String> {
    let urls = database_urls()?;
    run::run(&mut sovereign(&urls, &["migrate"]))?;
    ensure_dev_role()?;
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8000".to_owned());
    println!(
        "\nSovereign: http://{host}:{port}/  docs: http://{host}:{port}/docs/  \
         health: http://{host}:{port}/health  ready: http://{host}:{port}/ready\n"
    );
    let mut serve = sovereign(&urls, &["serve"]);
    if std::env::var_os("DOCS_ENABLED").is_none() {
        serve.env("DOCS_ENABLED", "true");
    }
    // The example web app's development server may call the API (and open websockets).
    if std::env::var_os("BACKEND_CORS_ORIGINS").is_none() {
        serve.env("BACKEND_CORS_ORIGINS", EXAMPLE_ORIGINS);
    }
    // Passkeys need a domain (no IP address) as relying party id: the app at localhost.
    if std::env::var_os("WEBAUTHN_ORIGINS").is_none()
        && std::env::var_os("WEBAUTHN_RP_ID").is_none()
    {
        serve.env("WEBAUTHN_RP_ID", "localhost");
        serve.env("WEBAUTHN_ORIGINS", "http://localhost:5173");
    }
    // Provider sign-ins come back to the example app.
    if std::env::var_os("AUTH_REDIRECT_URLS").is_none() {
        serve.env(
            "AUTH_REDIRECT_URLS",
            "http://localhost:5173/,http://127.0.0.1:5173/",
        );
    }
    if std::env::var_os("API_PUBLIC_URL").is_none() {
        serve.env("API_PUBLIC_URL", format!("http://{host}:{port}"));
    }
    println!(
        "The example web app (examples/web), in another terminal:\n  \
         cd examples/web && npm ci && VITE_SOVEREIGN_URL=http://{host}:{port} npm run dev\n  \
         then open http://localhost:5173/ (passkeys need `localhost`; see docs/clients.md)\n"
    );
    run::run(&mut serve)
}

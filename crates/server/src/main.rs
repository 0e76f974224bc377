//! The `sovereign` binary: parses the command line, loads settings, and hands over to the
//! library crates. Nothing else lives here.

use std::io::Write;
use std::process::ExitCode;

use std::sync::Arc;

use clap::{Parser, Subcommand};
use secrecy::SecretString;
use sovereign_auth::{Accounts, AuthError, LogMailer};
use sovereign_cache::Cache;
use sovereign_core::Settings;
use sovereign_core::settings::{ConfigError, Loaded};
use sovereign_core::telemetry::LogGuard;
use sovereign_db::migrations::{self, Revert};
use sovereign_db::{Db, PoolConfig};
use sovereign_tenancy::{TenantAdmin, TenantRef, TenantStatus};

#[derive(Debug, Parser)]
#[command(
    name = "sovereign",
    version,
    about = "Self-hosted multi-tenant backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server until SIGTERM/SIGINT.
    Serve,
    /// Apply pending migrations (default), revert some, or list them; connects as
    /// DATABASE_OWNER_URL (default DATABASE_URL).
    Migrate {
        #[command(subcommand)]
        action: Option<MigrateAction>,
    },
    /// Administer tenants; connects as DATABASE_ADMIN_URL (default DATABASE_OWNER_URL).
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Create a superadmin account (verified, active). The password is read from standard input
    /// (`--password-stdin`) or from SUPERUSER_PASSWORD, never from the command line.
    CreateSuperuser {
        /// The account's email address.
        #[arg(long)]
        email: String,
        /// The tenant to create it in (slug or id).
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Display name.
        #[arg(long, default_value = "")]
        full_name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Check the configuration and list every problem, with suggestions.
    CheckConfig,
    /// Print the OpenAPI document (JSON) on standard output.
    Openapi,
    /// Exit 0 when the server on this machine answers `/health` (for container health checks;
    /// the image has no curl).
    Healthcheck {
        /// The server's port.
        #[arg(long, env = "PORT", default_value_t = 8000)]
        port: u16,
        /// The path to ask.
        #[arg(long, default_value = "/health")]
        path: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert the most recent migrations.
    Down {
        /// How many to revert.
        #[arg(long, default_value_t = 1, conflicts_with = "all")]
        steps: usize,
        /// Revert every applied migration.
        #[arg(long)]
        all: bool,
    },
    /// List migrations and whether each is applied.
    Status,
}

#[derive(Debug, Subcommand)]
enum TenantAction {
    /// List every tenant.
    List,
    /// Create an active tenant.
    Create {
        /// Lowercase letters, digits and inner hyphens, 1–63 characters (e.g. acme).
        slug: String,
        /// Display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
    },
    /// Suspend a tenant: every request for it is refused; its data stays.
    Suspend {
        /// The tenant's slug or id.
        tenant: String,
    },
    /// Reactivate a suspended tenant.
    Activate {
        /// The tenant's slug or id.
        tenant: String,
    },
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Openapi => write_out(&sovereign_api::openapi::document_json()),
        Command::CheckConfig => check_config(),
        Command::Healthcheck {
            port,
            path,
            timeout,
        } => {
            sovereign_api::healthcheck::probe(port, &path, std::time::Duration::from_secs(timeout))
                .map_err(|why| format!("unhealthy: {why}"))
        }
        Command::Serve => match load() {
            Ok((settings, _log)) => serve(settings).await,
            Err(code) => return code,
        },
        Command::CreateSuperuser {
            email,
            tenant,
            full_name,
            password_stdin,
        } => match load() {
            Ok((settings, _log)) => {
                create_superuser(&settings, &email, &tenant, &full_name, password_stdin).await
            }
            Err(code) => return code,
        },
        Command::Tenant { action } => match load() {
            Ok((settings, _log)) => tenant(&settings, action).await,
            Err(code) => return code,
        },
        Command::Migrate { action } => match load() {
            Ok((settings, _log)) => migrate(&settings, action.unwrap_or(MigrateAction::Up)).await,
            Err(code) => return code,
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            report(&format!("error: {message}"));
            ExitCode::FAILURE
        }
    }
}

/// Loads settings and starts logging (keep the guard until exit), or reports every
/// configuration problem.
fn load() -> Result<(Settings, LogGuard), ExitCode> {
    let Loaded { settings, warnings } = Settings::load().map_err(|e| {
        report(&e.to_string());
        ExitCode::FAILURE
    })?;
    let guard = sovereign_core::telemetry::init(&settings.log).map_err(|e| {
        report(&format!("error: {e}"));
        ExitCode::FAILURE
    })?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    Ok((settings, guard))
}

async fn serve(settings: Settings) -> Result<(), String> {
    tracing::info!(
        environment = %settings.environment,
        version = env!("CARGO_PKG_VERSION"),
        "starting sovereign"
    );
    let app = sovereign_api::Application::build(settings)
        .await
        .map_err(|e| e.to_string())?;
    app.run_until_stopped().await.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(settings: &Settings, action: MigrateAction) -> Result<(), String> {
    let url = &settings.database.owner_url;
    let lines = match action {
        MigrateAction::Up => {
            let applied = migrations::run_pending(url)
                .await
                .map_err(|e| e.to_string())?;
            if applied.is_empty() {
                vec!["database is up to date".to_owned()]
            } else {
                applied.iter().map(|m| format!("applied {m}")).collect()
            }
        }
        MigrateAction::Down { steps, all } => {
            let which = if all {
                Revert::All
            } else {
                Revert::Last(steps)
            };
            let reverted = migrations::revert(url, which)
                .await
                .map_err(|e| e.to_string())?;
            reverted.iter().map(|m| format!("reverted {m}")).collect()
        }
        MigrateAction::Status => migrations::status(url)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|m| format!("[{}] {}", if m.applied { "x" } else { " " }, m.name))
            .collect(),
    };
    write_out(&(lines.join("\n") + "\n"))
}

async fn tenant(settings: &Settings, action: TenantAction) -> Result<(), String> {
    let db = Db::new(
        &settings.database.admin_url,
        PoolConfig::from(&settings.database),
    )
    .map_err(|e| e.to_string())?;
    let admin = TenantAdmin::new(db);
    let status = |tenant: &str, status| {
        let reference = TenantRef::parse(tenant).map_err(|e| e.to_string())?;
        Ok::<_, String>((reference, status))
    };
    let tenants = match action {
        TenantAction::List => admin.list().await,
        TenantAction::Create { slug, name } => admin
            .create(&slug, name.as_deref().unwrap_or(&slug))
            .await
            .map(|t| vec![t]),
        TenantAction::Suspend { tenant } => {
            let (reference, to) = status(&tenant, TenantStatus::Suspended)?;
            admin.set_status(&reference, to).await.map(|t| vec![t])
        }
        TenantAction::Activate { tenant } => {
            let (reference, to) = status(&tenant, TenantStatus::Active)?;
            admin.set_status(&reference, to).await.map(|t| vec![t])
        }
    }
    .map_err(|e| e.to_string())?;
    let lines: Vec<String> = tenants
        .iter()
        .map(|t| format!("{}  {:<9}  {}  {}", t.id, t.status.as_str(), t.slug, t.name))
        .collect();
    write_out(&(lines.join("\n") + "\n"))
}

async fn create_superuser(
    settings: &Settings,
    email: &str,
    tenant: &str,
    full_name: &str,
    password_stdin: bool,
) -> Result<(), String> {
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        std::env::var("SUPERUSER_PASSWORD").map_err(|_| {
            "no password: pipe it with --password-stdin, or set SUPERUSER_PASSWORD".to_owned()
        })?
    };
    let db = Db::from_settings(&settings.database).map_err(|e| e.to_string())?;
    let reference = TenantRef::parse(tenant).map_err(|e| e.to_string())?;
    let tenant = sovereign_tenancy::find(&db, &reference)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no tenant `{tenant}`; create it with `sovereign tenant create`"))?;
    let accounts = Accounts::from_settings(
        settings,
        db,
        Cache::in_memory(&settings.cache.prefix),
        None,
        Arc::new(LogMailer::default()),
    )
    .await
    .map_err(|e| e.to_string())?;
    let user = accounts
        .create_superuser(tenant.id, email, &SecretString::from(password), full_name)
        .await
        .map_err(|e| match e {
            AuthError::Invalid(fields) => fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        })?;
    write_out(&format!(
        "created superadmin {} <{}> in tenant {}\n",
        user.id, user.email, tenant.slug
    ))
}

fn check_config() -> Result<(), String> {
    match Settings::load() {
        Ok(Loaded { settings, warnings }) => {
            let mut out = format!(
                "configuration is valid ({} environment)\n",
                settings.environment
            );
            for w in &warnings {
                out.push_str(&format!("  warning: {w}\n"));
            }
            write_out(&out)
        }
        Err(ConfigError { problems }) => Err(ConfigError { problems }.to_string()),
    }
}

fn write_out(text: &str) -> Result<(), String> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write to standard output: {e}"))
}

fn report(text: &str) {
    let _ = writeln!(std::io::stderr(), "{}", text.trim_end());
}

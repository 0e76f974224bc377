//! What each sub-command does, on the services the API crate builds from the settings.

use std::io::Write;
use std::time::Duration;

use secrecy::SecretString;
use sovereign_api::{Services, Settings};
use sovereign_auth::AuthError;
use sovereign_core::settings::{ConfigError, Loaded};
use sovereign_core::telemetry::LogGuard;
use sovereign_db::migrations::{self, Revert};
use sovereign_tenancy::{TenantAdmin, TenantRef, TenantStatus};

use crate::cli::{Command, MigrateAction, StorageAction, TenantAction};

/// Loads settings and starts logging (keep the guard until exit), or reports every
/// configuration problem.
pub fn load() -> Result<(Settings, LogGuard), String> {
    let Loaded { settings, warnings } = Settings::load().map_err(|e| e.to_string())?;
    let guard =
        sovereign_core::telemetry::init(&settings.log).map_err(|e| format!("error: {e}"))?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    Ok((settings, guard))
}

/// Runs a command that needs the settings.
pub async fn run(settings: &Settings, command: Command) -> Result<(), String> {
    match command {
        Command::Serve => serve(settings.clone()).await,
        Command::Migrate { action } => migrate(settings, action.unwrap_or(MigrateAction::Up)).await,
        Command::Tenant { action } => tenant(settings, action).await,
        Command::CreateSuperuser {
            email,
            tenant,
            full_name,
            password_stdin,
        } => create_superuser(settings, &email, &tenant, &full_name, password_stdin).await,
        Command::Storage { action } => storage(settings, action).await,
        Command::Openapi => openapi(),
        Command::CheckConfig => check_config(),
        Command::Healthcheck {
            port,
            path,
            timeout,
        } => healthcheck(port, &path, timeout),
    }
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

async fn storage(settings: &Settings, action: StorageAction) -> Result<(), String> {
    let StorageAction::Sweep { older_than } = action;
    let services = Services::for_command(settings)
        .await
        .map_err(|e| e.to_string())?;
    let storage = services
        .storage
        .ok_or("file storage is off (ENABLE_FILE_UPLOADS=false)")?;
    let grace = older_than.map_or(settings.storage.sweep_grace, Duration::from_secs);
    let swept = storage.sweep(grace).await.map_err(|e| e.to_string())?;
    write_out(&format!(
        "removed {} abandoned blobs, {} expired uploads and {} orphan parts\n",
        swept.blobs, swept.uploads, swept.orphan_parts
    ))
}

async fn tenant(settings: &Settings, action: TenantAction) -> Result<(), String> {
    let admin = TenantAdmin::from_settings(&settings.database).map_err(|e| e.to_string())?;
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
    let services = Services::for_command(settings)
        .await
        .map_err(|e| e.to_string())?;
    let reference = TenantRef::parse(tenant).map_err(|e| e.to_string())?;
    let tenant = sovereign_tenancy::find(&services.db, &reference)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no tenant `{tenant}`; create it with `sovereign tenant create`"))?;
    let user = services
        .accounts
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

pub fn check_config() -> Result<(), String> {
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

pub fn openapi() -> Result<(), String> {
    write_out(&sovereign_api::openapi::document_json())
}

pub fn healthcheck(port: u16, path: &str, timeout_secs: u64) -> Result<(), String> {
    sovereign_api::healthcheck::probe(port, path, Duration::from_secs(timeout_secs))
        .map_err(|why| format!("unhealthy: {why}"))
}

pub fn write_out(text: &str) -> Result<(), String> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write to standard output: {e}"))
}

pub fn report(text: &str) {
    let _ = writeln!(std::io::stderr(), "{}", text.trim_end());
}

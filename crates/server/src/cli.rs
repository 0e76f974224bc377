//! The command line: one sub-command per role of the binary.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sovereign",
    version,
    about = "Self-hosted multi-tenant backend"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// File storage maintenance.
    Storage {
        #[command(subcommand)]
        action: StorageAction,
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
pub enum MigrateAction {
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
pub enum StorageAction {
    /// Remove, once, what the server's periodic sweep removes: the bytes of uploads that never
    /// finished (the server stopped, the client went away) and of replaced or deleted objects,
    /// and direct uploads past their expiry.
    Sweep {
        /// Only what is older than this many seconds (default STORAGE_SWEEP_GRACE_SECONDS); 0
        /// when no server is running.
        #[arg(long)]
        older_than: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantAction {
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

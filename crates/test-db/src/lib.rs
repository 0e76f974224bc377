#![doc = include_str!("../README.md")]
#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "a test harness fails loudly with instructions"
)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sovereign_core::settings::SecretUrl;
use tokio::sync::OnceCell;
use url::Url;

/// The administrator URL used when `TEST_DATABASE_URL` is not set: the superuser of the
/// project-local cluster (`cargo xtask db up`).
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:55432/postgres";

/// The login role tests connect as; a member of `sovereign_app`.
pub const TEST_RUNTIME_ROLE: &str = "sovereign_test_app";

/// The login role tenant administration connects as in tests; a member of
/// `sovereign_tenant_admin` and nothing else.
pub const TEST_TENANT_ADMIN_ROLE: &str = "sovereign_test_tenant_admin";

const TEMPLATE_PREFIX: &str = "sovereign_tpl_";
const BUILD_PREFIX: &str = "sovereign_tplbuild_";
const TEST_PREFIX: &str = "sovereign_test_";
/// Advisory lock key serialising template builds and sweeps ("SOVTESTD").
const HARNESS_LOCK_KEY: i64 = 0x534F_5654_4553_5444;
/// Leftovers older than this are swept even when their process cannot be checked.
const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database that exists for the lifetime of this value.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    admin_url: Url,
    owner_url: SecretUrl,
    runtime_url: SecretUrl,
    tenant_admin_url: SecretUrl,
}

impl TestDatabase {
    /// A new database with every migration applied.
    pub async fn migrated() -> Self {
        let admin = admin_url();
        let template = TEMPLATE
            .get_or_init(|| prepare_template(admin.clone()))
            .await
            .clone();
        Self::create(admin, Some(&template)).await
    }

    /// A new database with nothing in it (for migration tests).
    pub async fn empty() -> Self {
        Self::create(admin_url(), None).await
    }

    async fn create(admin: Url, template: Option<&str>) -> Self {
        let name = new_test_name();
        let mut conn = admin_conn(&admin).await;
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
            None => format!("CREATE DATABASE {name}"),
        };
        exec(&mut conn, &sql).await;
        Self {
            owner_url: with_database(&admin, &name),
            runtime_url: login_url(&admin, &name, TEST_RUNTIME_ROLE),
            tenant_admin_url: login_url(&admin, &name, TEST_TENANT_ADMIN_ROLE),
            admin_url: admin,
            name,
        }
    }

    /// URL for the runtime role: what the server's `DATABASE_URL` would be.
    #[must_use]
    pub fn url(&self) -> &SecretUrl {
        &self.runtime_url
    }

    /// URL for tenant administration: a login role in `sovereign_tenant_admin` only, what
    /// `DATABASE_ADMIN_URL` would be.
    #[must_use]
    pub fn tenant_admin_url(&self) -> &SecretUrl {
        &self.tenant_admin_url
    }

    /// URL for the schema owner: what `DATABASE_OWNER_URL` would be.
    #[must_use]
    pub fn owner_url(&self) -> &SecretUrl {
        &self.owner_url
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection as the schema owner (a superuser in tests), for inspecting or arranging state
    /// behind the application's back.
    pub async fn owner_conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(self.owner_url.expose())
            .await
            .expect("connect to the test database as its owner")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside a test's runtime, which must not block on itself: use a thread with
        // its own small runtime. A failure here leaves a database for the next sweep.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = AsyncPgConnection::establish(admin.as_str()).await {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                }
            });
        })
        .join();
    }
}

fn admin_url() -> Url {
    let text = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
    Url::parse(&text).unwrap_or_else(|e| panic!("TEST_DATABASE_URL is not a URL ({e}): {text}"))
}

async fn admin_conn(admin: &Url) -> AsyncPgConnection {
    AsyncPgConnection::establish(admin.as_str())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach the test PostgreSQL at {}: {e}\n\
                 Start the project-local cluster with `cargo xtask db up`, run the suite with \
                 `cargo xtask ci`, or set TEST_DATABASE_URL to a superuser URL.",
                SecretUrl::new(admin.clone()).redacted()
            )
        })
}

async fn exec(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("test database setup failed on `{sql}`: {e}"));
}

fn with_database(admin: &Url, name: &str) -> SecretUrl {
    let mut url = admin.clone();
    url.set_path(&format!("/{name}"));
    SecretUrl::new(url)
}

/// `admin` with the database `name` and the login role `role` (whose password is its name).
fn login_url(admin: &Url, name: &str, role: &str) -> SecretUrl {
    let mut url = admin.clone();
    url.set_path(&format!("/{name}"));
    url.set_username(role)
        .and_then(|()| url.set_password(Some(role)))
        .expect("a postgres:// URL accepts credentials");
    SecretUrl::new(url)
}

fn new_test_name() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{TEST_PREFIX}{}_{secs}_{n}", std::process::id())
}

/// Builds the migrated template if this version of the migrations has none yet, creates the
/// test login role, and sweeps leftovers — all under one advisory lock.
async fn prepare_template(admin: Url) -> String {
    let template = format!("{TEMPLATE_PREFIX}{:016x}", migrations_fingerprint());
    let mut conn = admin_conn(&admin).await;
    exec(
        &mut conn,
        &format!("SELECT pg_advisory_lock({HARNESS_LOCK_KEY})"),
    )
    .await;

    sweep(&mut conn, &template).await;
    if !database_exists(&mut conn, &template).await {
        let build = format!("{BUILD_PREFIX}{}", std::process::id());
        exec(
            &mut conn,
            &format!("DROP DATABASE IF EXISTS {build} WITH (FORCE)"),
        )
        .await;
        exec(&mut conn, &format!("CREATE DATABASE {build}")).await;
        let owner = with_database(&admin, &build);
        sovereign_db::migrations::run_pending(&owner)
            .await
            .unwrap_or_else(|e| panic!("migrating the test template failed: {e}"));
        // Make sure the migration session is gone before renaming.
        exec(
            &mut conn,
            &format!(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = '{build}'"
            ),
        )
        .await;
        exec(
            &mut conn,
            &format!("ALTER DATABASE {build} RENAME TO {template}"),
        )
        .await;
        exec(
            &mut conn,
            &format!("ALTER DATABASE {template} WITH ALLOW_CONNECTIONS false"),
        )
        .await;
    }
    ensure_login_role(
        &mut conn,
        TEST_RUNTIME_ROLE,
        sovereign_db::RUNTIME_GROUP_ROLE,
    )
    .await;
    ensure_login_role(
        &mut conn,
        TEST_TENANT_ADMIN_ROLE,
        sovereign_db::TENANT_ADMIN_ROLE,
    )
    .await;

    exec(
        &mut conn,
        &format!("SELECT pg_advisory_unlock({HARNESS_LOCK_KEY})"),
    )
    .await;
    template
}

/// Creates the login role `role` (password: its name) in `group` unless it exists; roles are
/// shared by the whole cluster.
async fn ensure_login_role(conn: &mut AsyncPgConnection, role: &str, group: &str) {
    exec(
        conn,
        &format!(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                     CREATE ROLE {role} LOGIN PASSWORD '{role}'
                         NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS IN ROLE {group};
                 END IF;
             END $$"
        ),
    )
    .await;
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> bool {
    !database_names(conn, name).await.is_empty()
}

async fn database_names(conn: &mut AsyncPgConnection, like: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    diesel::sql_query("SELECT datname::text AS datname FROM pg_database WHERE datname LIKE $1")
        .bind::<diesel::sql_types::Text, _>(like)
        .load::<Row>(conn)
        .await
        .expect("list databases")
        .into_iter()
        .map(|r| r.datname)
        .collect()
}

/// Drops templates of other migration versions, half-built templates, and test databases
/// whose process has exited (or that are older than [`STALE_AFTER`]).
async fn sweep(conn: &mut AsyncPgConnection, current_template: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut doomed: Vec<String> = database_names(conn, &format!("{TEMPLATE_PREFIX}%"))
        .await
        .into_iter()
        .filter(|n| n != current_template)
        .collect();
    doomed.extend(database_names(conn, &format!("{BUILD_PREFIX}%")).await);
    for name in database_names(conn, &format!("{TEST_PREFIX}%")).await {
        let mut parts = name[TEST_PREFIX.len()..].split('_');
        let pid: Option<u32> = parts.next().and_then(|p| p.parse().ok());
        let created: Option<u64> = parts.next().and_then(|p| p.parse().ok());
        let (Some(pid), Some(created)) = (pid, created) else {
            continue;
        };
        let too_old = now.saturating_sub(created) > STALE_AFTER.as_secs();
        let proc_dir = Path::new("/proc");
        let owner_gone = proc_dir.exists() && !proc_dir.join(pid.to_string()).exists();
        if too_old || owner_gone {
            doomed.push(name);
        }
    }
    for name in doomed {
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(conn)
            .await;
    }
}

/// FNV-1a over the migration files, so a changed migration gets a new template.
fn migrations_fingerprint() -> u64 {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut files = Vec::new();
    collect_files(&dir, &mut files);
    files.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for file in files {
        let bytes = std::fs::read(&file).expect("read a migration file");
        let name = file
            .strip_prefix(&dir)
            .unwrap_or(&file)
            .to_string_lossy()
            .into_owned();
        for byte in name.bytes().chain(bytes) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

fn collect_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read the migrations directory") {
        let path = entry.expect("read a directory entry").path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

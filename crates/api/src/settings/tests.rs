use std::time::Duration;

use sovereign_auth::{MIN_SECRET_KEY_BYTES, SmtpTls};
use sovereign_core::Environment;
use sovereign_core::settings::{ConfigError, Loaded, SettingIssue};
use sovereign_core::telemetry::LogFormat;

use super::*;

const DB: (&str, &str) = ("DATABASE_URL", "postgres://app:pw@127.0.0.1:5432/sovereign");
const STRONG_KEY: &str = "q8Jx2mV7pL0sT4wZ9cR1nB6yK3hD5fGaE8uI2oP7";

fn load(vars: &[(&str, &str)]) -> Result<Loaded<Settings>, ConfigError> {
    Settings::from_vars(vars.iter().copied())
}

fn problems(vars: &[(&str, &str)]) -> Vec<SettingIssue> {
    match load(vars) {
        Ok(loaded) => panic!("expected problems, got {:?}", loaded.settings),
        Err(e) => e.problems,
    }
}

fn settings(vars: &[(&str, &str)]) -> Settings {
    match load(vars) {
        Ok(loaded) => loaded.settings,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn development_needs_only_a_database_url_and_uses_documented_defaults() {
    let loaded = load(&[DB]).unwrap();
    let s = loaded.settings;
    assert_eq!(s.environment, Environment::Development);
    assert_eq!(s.server.host, "127.0.0.1");
    assert_eq!(s.server.port, 8000);
    assert!(s.server.workers >= 1);
    assert_eq!(s.server.json_limit, 1_048_576);
    assert_eq!(s.database.pool.max_size, 16);
    assert_eq!(s.database.pool.wait_timeout, Duration::from_millis(1000));
    assert_eq!(s.database.owner_url, s.database.url);
    assert!(s.cache.url.is_none());
    assert_eq!(s.auth.access_token_ttl, Duration::from_secs(15 * 60));
    assert_eq!(s.auth.refresh_token_ttl, Duration::from_secs(7 * 86_400));
    assert!(s.server.docs);
    assert!(!s.tenancy.multi_tenant);
    assert_eq!(s.log.format, LogFormat::Pretty);
    assert_eq!(s.log.filter, "info");
    // A random key was generated, and the operator is told.
    assert!(s.auth.secret_key_bytes().len() >= MIN_SECRET_KEY_BYTES);
    assert!(loaded.warnings.iter().any(|w| w.setting == "SECRET_KEY"));
}

#[test]
fn every_problem_is_reported_at_once_with_a_suggestion() {
    let found = problems(&[
        ("ENVIRONMENT", "production"),
        ("DEBUG", "true"),
        ("DATABASE_URL", "mysql://root:pw@localhost/app"),
        ("SECRET_KEY", "changeme"),
        ("BACKEND_CORS_ORIGINS", "*"),
        ("PORT", "eighty"),
        ("LOG_LEVEL", "loud=="),
        ("VALKEY_URL", "http://cache:6379"),
        ("DATABASE_POOL_MAX_SIZE", "0"),
    ]);
    let named: Vec<&str> = found.iter().map(|p| p.setting).collect();
    for expected in [
        "DEBUG",
        "DATABASE_URL",
        "SECRET_KEY",
        "BACKEND_CORS_ORIGINS",
        "PORT",
        "LOG_LEVEL",
        "VALKEY_URL",
        "DATABASE_POOL_MAX_SIZE",
    ] {
        assert!(
            named.contains(&expected),
            "{expected} missing from {named:?}"
        );
    }
    for p in &found {
        assert!(p.suggestion.is_some(), "no suggestion for {p}");
    }
    // The mysql password is not echoed back.
    let text = ConfigError { problems: found }.to_string();
    assert!(!text.contains(":pw@"), "{text}");
    assert!(text.contains("mysql://root:***@localhost/app"), "{text}");
}

#[test]
fn production_refuses_missing_short_placeholder_and_low_entropy_secret_keys() {
    let prod = ("ENVIRONMENT", "production");
    let missing = problems(&[prod, DB]);
    assert!(
        missing
            .iter()
            .any(|p| p.setting == "SECRET_KEY" && p.message.contains("required"))
    );

    let short = problems(&[prod, DB, ("SECRET_KEY", "0123456789abcdef")]);
    assert!(
        short
            .iter()
            .any(|p| p.setting == "SECRET_KEY" && p.message.contains("16 bytes"))
    );

    let placeholder = problems(&[prod, DB, ("SECRET_KEY", "your-secret-key-here")]);
    assert!(
        placeholder
            .iter()
            .any(|p| p.message.contains("placeholder"))
    );

    let repetitive = problems(&[prod, DB, ("SECRET_KEY", &"ab".repeat(32))]);
    assert!(repetitive.iter().any(|p| p.message.contains("distinct")));

    let s = settings(&[prod, DB, ("SECRET_KEY", STRONG_KEY)]);
    assert_eq!(s.auth.secret_key_bytes(), STRONG_KEY.as_bytes());
}

#[test]
fn staging_is_as_strict_as_production_about_the_secret_key() {
    let found = problems(&[("ENVIRONMENT", "staging"), DB, ("SECRET_KEY", "short")]);
    assert!(found.iter().any(|p| p.setting == "SECRET_KEY"));
}

#[test]
fn a_weak_key_in_development_is_a_warning_not_an_error() {
    let loaded = load(&[DB, ("SECRET_KEY", "dev")]).unwrap();
    assert!(loaded.warnings.iter().any(|w| w.setting == "SECRET_KEY"));
}

#[test]
fn wildcard_origin_with_credentials_is_refused_but_allowed_without() {
    let found = problems(&[DB, ("BACKEND_CORS_ORIGINS", "*")]);
    let p = found
        .iter()
        .find(|p| p.setting == "BACKEND_CORS_ORIGINS")
        .unwrap();
    assert!(p.message.contains("credentials"), "{p}");
    assert!(
        p.suggestion
            .as_deref()
            .unwrap()
            .contains("CORS_ALLOW_CREDENTIALS=false")
    );

    let s = settings(&[
        DB,
        ("BACKEND_CORS_ORIGINS", "*"),
        ("CORS_ALLOW_CREDENTIALS", "false"),
    ]);
    assert_eq!(s.cors.allowed_origins, ["*"]);
}

#[test]
fn origins_are_read_from_lists_or_json_and_normalised() {
    let comma = settings(&[
        DB,
        (
            "BACKEND_CORS_ORIGINS",
            "https://App.Example.com:443/, http://localhost:3000 ,https://app.example.com",
        ),
    ]);
    assert_eq!(
        comma.cors.allowed_origins,
        ["https://app.example.com", "http://localhost:3000"]
    );
    let json = settings(&[DB, ("BACKEND_CORS_ORIGINS", r#"["http://localhost:5173"]"#)]);
    assert_eq!(json.cors.allowed_origins, ["http://localhost:5173"]);

    let bad = problems(&[
        DB,
        ("BACKEND_CORS_ORIGINS", "https://a.example/path,ftp://b"),
    ]);
    assert_eq!(bad.len(), 2, "{bad:?}");
}

#[test]
fn valkey_url_wins_over_redis_url_and_either_works_alone() {
    let both = load(&[
        DB,
        ("VALKEY_URL", "redis://valkey:6379"),
        ("REDIS_URL", "redis://redis:6379"),
    ])
    .unwrap();
    assert_eq!(
        both.settings.cache.url.as_ref().unwrap().expose(),
        "redis://valkey:6379"
    );
    assert!(both.warnings.iter().any(|w| w.setting == "REDIS_URL"));

    let redis_only = settings(&[DB, ("REDIS_URL", "redis://redis:6379/2")]);
    assert_eq!(
        redis_only.cache.url.unwrap().expose(),
        "redis://redis:6379/2"
    );
}

#[test]
fn cache_edge_and_rate_limit_settings_have_safe_defaults() {
    let s = settings(&[DB]);
    assert_eq!(s.cache.prefix, "sovereign");
    assert_eq!(s.cache.timeout, Duration::from_millis(250));
    assert!(s.network.trusted_proxies.is_empty());
    assert!(s.rate_limit.enabled);
    assert_eq!(s.rate_limit.api.to_string(), "600/60s");
    assert_eq!(s.rate_limit.auth.to_string(), "20/60s");
    assert_eq!(s.cache.fallback_divisor, 4);
}

#[test]
fn redis_urls_over_tls_are_refused_with_a_way_out() {
    let issues = problems(&[DB, ("REDIS_URL", "rediss://:secret@cache.example:6380")]);
    let issue = issues.iter().find(|i| i.setting == "REDIS_URL").unwrap();
    assert!(issue.message.contains("TLS"), "{}", issue.message);
    assert!(!issue.message.contains("secret"), "{}", issue.message);
    assert!(issue.suggestion.as_deref().unwrap().contains("tunnel"));
    let s = settings(&[DB, ("VALKEY_URL", "unix:///run/valkey/valkey.sock")]);
    assert!(s.cache.url.is_some());
}

#[test]
fn trusted_proxies_take_addresses_and_networks() {
    let s = settings(&[DB, ("TRUSTED_PROXIES", " 127.0.0.1, ::1 ,10.1.2.3/8 ")]);
    let nets: Vec<String> = s
        .network
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    // Host bits are dropped: 10.1.2.3/8 means the network 10.0.0.0/8.
    assert_eq!(nets, ["127.0.0.1/32", "::1/128", "10.0.0.0/8"]);
}

#[test]
fn bad_cache_edge_and_rate_limit_values_are_all_reported() {
    let issues = problems(&[
        DB,
        ("TRUSTED_PROXIES", "10.0.0.0/8,localhost"),
        ("RATE_LIMIT_API", "lots"),
        ("RATE_LIMIT_AUTH", "0/min"),
        ("CACHE_PREFIX", "my app"),
        ("CACHE_TIMEOUT_MS", "0"),
    ]);
    let names: Vec<&str> = issues.iter().map(|i| i.setting).collect();
    for name in [
        "TRUSTED_PROXIES",
        "RATE_LIMIT_API",
        "RATE_LIMIT_AUTH",
        "CACHE_PREFIX",
        "CACHE_TIMEOUT_MS",
    ] {
        assert!(names.contains(&name), "{name} not reported: {names:?}");
    }
    let proxy = issues
        .iter()
        .find(|i| i.setting == "TRUSTED_PROXIES")
        .unwrap();
    assert!(proxy.message.contains("localhost"), "{}", proxy.message);
    assert!(proxy.suggestion.is_some());
}

#[test]
fn database_url_is_required_and_must_be_postgres() {
    let missing = problems(&[]);
    assert!(
        missing
            .iter()
            .any(|p| p.setting == "DATABASE_URL" && p.message.contains("required"))
    );

    let malformed = problems(&[("DATABASE_URL", "not a url")]);
    assert!(malformed.iter().any(|p| p.setting == "DATABASE_URL"));

    let socket = settings(&[(
        "DATABASE_URL",
        "postgres:///sovereign?host=/var/run/postgresql",
    )]);
    assert_eq!(socket.database.url.path(), "/sovereign");
}

#[test]
fn the_tenant_admin_url_defaults_to_the_owner_url_then_the_database_url() {
    let s = settings(&[DB]);
    assert_eq!(s.database.admin_url.expose(), s.database.url.expose());
    let owner = "postgres://owner:pw@127.0.0.1:5432/sovereign";
    let s = settings(&[DB, ("DATABASE_OWNER_URL", owner)]);
    assert_eq!(s.database.admin_url.expose(), owner);
    let admin = "postgres://tenant_admin:pw@127.0.0.1:5432/sovereign";
    let s = settings(&[
        DB,
        ("DATABASE_OWNER_URL", owner),
        ("DATABASE_ADMIN_URL", admin),
    ]);
    assert_eq!(s.database.admin_url.expose(), admin);
    assert!(!format!("{:?}", s.database).contains("tenant_admin:pw"));
}

#[test]
fn owner_url_is_separate_when_given() {
    let s = settings(&[
        DB,
        (
            "DATABASE_OWNER_URL",
            "postgres://owner:pw2@127.0.0.1/sovereign",
        ),
    ]);
    assert_eq!(s.database.owner_url.username(), "owner");
    assert_eq!(s.database.url.username(), "app");
}

#[test]
fn debug_output_never_contains_secrets() {
    let s = settings(&[
        DB,
        ("SECRET_KEY", STRONG_KEY),
        ("REDIS_URL", "redis://:redispw@cache:6379"),
    ]);
    let shown = format!("{s:?}");
    for secret in [STRONG_KEY, ":pw@", "redispw"] {
        assert!(!shown.contains(secret), "{secret} leaked in {shown}");
    }
}

#[test]
fn production_hides_docs_and_logs_json_unless_told_otherwise() {
    let prod = [
        ("ENVIRONMENT", "production"),
        DB,
        ("SECRET_KEY", STRONG_KEY),
    ];
    let s = settings(&prod);
    assert!(!s.server.docs);
    assert_eq!(s.log.format, LogFormat::Json);

    let mut with_docs = prod.to_vec();
    with_docs.push(("DOCS_ENABLED", "true"));
    with_docs.push(("LOG_FORMAT", "pretty"));
    let s = settings(&with_docs);
    assert!(s.server.docs);
    assert_eq!(s.log.format, LogFormat::Pretty);
}

#[test]
fn debug_raises_the_default_log_level_and_is_refused_in_production() {
    assert_eq!(settings(&[DB, ("DEBUG", "1")]).log.filter, "debug");
    assert_eq!(
        settings(&[DB, ("DEBUG", "1"), ("LOG_LEVEL", "warn")])
            .log
            .filter,
        "warn"
    );
    let found = problems(&[
        ("ENVIRONMENT", "prod"),
        DB,
        ("SECRET_KEY", STRONG_KEY),
        ("DEBUG", "yes"),
    ]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].setting, "DEBUG");
}

#[test]
fn ranges_are_enforced() {
    let found = problems(&[
        DB,
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "0"),
        ("REFRESH_TOKEN_EXPIRE_DAYS", "9999"),
        ("WORKERS", "0"),
        ("JSON_BODY_LIMIT_BYTES", "10"),
    ]);
    let named: Vec<&str> = found.iter().map(|p| p.setting).collect();
    assert_eq!(
        named,
        [
            "WORKERS",
            "JSON_BODY_LIMIT_BYTES",
            "ACCESS_TOKEN_EXPIRE_MINUTES",
            "REFRESH_TOKEN_EXPIRE_DAYS"
        ]
    );
}

#[test]
fn empty_values_count_as_unset() {
    let s = settings(&[DB, ("PORT", ""), ("REDIS_URL", "  ")]);
    assert_eq!(s.server.port, 8000);
    assert!(s.cache.url.is_none());
}

#[test]
fn documented_settings_are_unique_and_complete() {
    let specs = Settings::documented();
    let mut names: Vec<&str> = specs.iter().map(|d| d.spec.name).collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count, "a setting is declared twice");
    for seed_name in [
        "DATABASE_URL",
        "VALKEY_URL",
        "REDIS_URL",
        "SECRET_KEY",
        "BACKEND_CORS_ORIGINS",
        "ENVIRONMENT",
        "DEBUG",
        "HOST",
        "PORT",
        "WORKERS",
        "ACCESS_TOKEN_EXPIRE_MINUTES",
        "REFRESH_TOKEN_EXPIRE_DAYS",
        "ENABLE_MULTI_TENANT",
        "ENABLE_VECTOR",
        "ENABLE_WEBSOCKETS",
        "DOCS_ENABLED",
    ] {
        assert!(names.contains(&seed_name), "{seed_name} is not read");
    }
}

/// `docs/configuration.md` holds a generated table between markers; it must match the specs.
/// Run with `UPDATE_DOCS=1` to rewrite it.
#[test]
fn configuration_reference_matches_the_settings() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let (start, end) = ("<!-- settings:begin -->\n", "<!-- settings:end -->");
    let (before, rest) = doc.split_once(start).expect("begin marker");
    let (current, after) = rest.split_once(end).expect("end marker");
    let expected = render_reference();
    if current != expected {
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, format!("{before}{start}{expected}{end}{after}")).unwrap();
        } else {
            panic!(
                "docs/configuration.md is out of date with the settings; \
                 run `UPDATE_DOCS=1 cargo test -p sovereign-api --lib settings` and review the diff"
            );
        }
    }
}

fn render_reference() -> String {
    let mut out = String::new();
    let mut section = "";
    for Documented {
        section: heading,
        spec,
    } in Settings::documented()
    {
        if heading != section {
            if !section.is_empty() {
                out.push('\n');
            }
            section = heading;
            out.push_str(&format!(
                "### {heading}\n\n| Variable | Default | Description |\n|---|---|---|\n"
            ));
        }
        let secret = if spec.secret { " *(secret)*" } else { "" };
        out.push_str(&format!(
            "| `{}`{secret} | {} | {} |\n",
            spec.name,
            spec.default,
            spec.description.replace('|', "\\|")
        ));
    }
    out
}

#[test]
fn account_settings_have_safe_defaults() {
    let s = settings(&[DB]);
    assert_eq!(s.auth.bcrypt_cost, 12);
    assert_eq!(s.auth.password_min_length, 12);
    assert!(s.auth.hash_concurrency >= 1);
    assert_eq!(s.auth.issuer, "sovereign");
    assert_eq!(s.auth.audience, "sovereign-api");
    assert!(s.auth.private_key_pem.is_none());
    assert_eq!(s.auth.password_reset_ttl, Duration::from_secs(30 * 60));
    assert_eq!(s.auth.account_quota.to_string(), "10/60s");
    assert_eq!(s.auth.public_url, "http://localhost:8000");
    assert!(s.mail.smtp.is_none(), "no SMTP: mail is logged");
}

#[test]
fn bcrypt_below_cost_10_is_only_for_development() {
    let loaded = load(&[DB, ("BCRYPT_COST", "4")]).unwrap();
    assert_eq!(loaded.settings.auth.bcrypt_cost, 4);
    assert!(loaded.warnings.iter().any(|w| w.setting == "BCRYPT_COST"));
    let production = [
        DB,
        ("ENVIRONMENT", "production"),
        ("SECRET_KEY", STRONG_KEY),
        ("BCRYPT_COST", "9"),
    ];
    assert!(
        problems(&production)
            .iter()
            .any(|p| p.setting == "BCRYPT_COST")
    );
    let mut fine = production;
    fine[3] = ("BCRYPT_COST", "10");
    assert_eq!(settings(&fine).auth.bcrypt_cost, 10);
}

#[test]
fn signing_key_files_must_exist_and_be_pem() {
    let found = problems(&[DB, ("JWT_PRIVATE_KEY_FILE", "/nonexistent/jwt.pem")]);
    assert!(
        found
            .iter()
            .any(|p| p.setting == "JWT_PRIVATE_KEY_FILE" && p.message.contains("cannot read"))
    );
    let not_pem = problems(&[DB, ("JWT_PRIVATE_KEY_FILE", "/etc/hostname")]);
    assert!(not_pem.iter().any(|p| p.message.contains("not a PEM file")));
    let orphan = problems(&[DB, ("JWT_PUBLIC_KEY_FILES", "/etc/hostname")]);
    assert!(orphan.iter().any(|p| p.setting == "JWT_PUBLIC_KEY_FILES"));
}

#[test]
fn smtp_settings_and_plaintext_mail_in_production() {
    let s = settings(&[
        DB,
        ("SMTP_HOST", "mail.example.com"),
        ("SMTP_USER", "sovereign"),
        ("SMTP_PASSWORD", "hunter2-smtp"),
    ]);
    let smtp = s.mail.smtp.as_ref().unwrap();
    assert_eq!((smtp.port, smtp.tls), (587, SmtpTls::StartTls));
    assert!(
        !format!("{:?}", s.mail).contains("hunter2"),
        "the password is redacted"
    );
    let production = [
        DB,
        ("ENVIRONMENT", "production"),
        ("SECRET_KEY", STRONG_KEY),
        ("SMTP_TLS", "none"),
    ];
    let mut remote = production.to_vec();
    remote.push(("SMTP_HOST", "mail.example.com"));
    assert!(problems(&remote).iter().any(|p| p.setting == "SMTP_TLS"));
    let mut local = production.to_vec();
    local.push(("SMTP_HOST", "127.0.0.1"));
    assert_eq!(settings(&local).mail.smtp.unwrap().tls, SmtpTls::None);
    assert!(
        problems(&[DB, ("EMAILS_FROM", "nobody")])
            .iter()
            .any(|p| p.setting == "EMAILS_FROM")
    );
}

#[test]
fn the_embedding_url_is_redacted_like_every_other_url() {
    let s = settings(&[
        DB,
        ("VECTOR_EMBEDDER", "openai"),
        ("EMBEDDING_URL", "https://u:embedpw@embed.example/v1"),
        ("EMBEDDING_API_KEY", "sk-embed-key"),
        ("METRICS_TOKEN", "metrics-token-value"),
    ]);
    let shown = format!("{s:?}");
    for secret in ["embedpw", "sk-embed-key", "metrics-token-value"] {
        assert!(!shown.contains(secret), "{secret} leaked in {shown}");
    }
}

#[test]
fn every_crate_documents_its_settings_under_its_own_heading() {
    let sections: Vec<&str> = Settings::documented().iter().map(|d| d.section).collect();
    for heading in [
        "General",
        "Logging",
        "HTTP server",
        "Database",
        "Cache",
        "Tenancy",
        "Accounts and tokens",
        "Mail",
        "Vector search",
        "Realtime",
        "Metrics",
    ] {
        assert!(
            sections.contains(&heading),
            "{heading} missing: {sections:?}"
        );
    }
    // Each heading's settings are together.
    let mut seen: Vec<&str> = Vec::new();
    for s in sections {
        if seen.last() != Some(&s) {
            assert!(!seen.contains(&s), "{s} is split");
            seen.push(s);
        }
    }
}

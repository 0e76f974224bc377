//! A tour of sovereign-auth without any web framework: register, sign in, authenticate,
//! refresh, and see a replayed refresh token revoke its session.
//!
//! `cargo xtask db up` then `cargo run -p sovereign-auth --example tour` (or set DATABASE_URL to
//! a migrated database, as a role that is not its owner).

use std::sync::Arc;

use secrecy::SecretString;
use sovereign_auth::{Accounts, AuthError, AuthSettings, ClientContext, Outbox, Registration};
use sovereign_cache::Cache;
use sovereign_core::settings::from_vars;
use sovereign_db::{DatabaseSettings, Db};
use sovereign_tenancy::DEFAULT_TENANT_ID;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        "postgres://sovereign_dev:sovereign_dev@127.0.0.1:55432/sovereign".to_owned()
    });
    // Each crate reads its own settings; these two are all accounts need.
    let database =
        from_vars::<DatabaseSettings, _, _, _>([("DATABASE_URL", url.as_str())])?.settings;
    // No refresh reuse interval, so that the replay below is reuse at once.
    let auth = from_vars::<AuthSettings, _, _, _>([
        ("BCRYPT_COST", "10"),
        ("REFRESH_TOKEN_REUSE_SECONDS", "0"),
    ])?
    .settings;
    let db = Db::from_settings(&database)?;
    let outbox = Outbox::new();
    let accounts = Accounts::from_settings(
        &auth,
        db,
        Cache::in_memory("tour"),
        None,
        Arc::new(outbox.clone()),
    )
    .await?;

    let email = format!("tour-{}@example.com", uuid::Uuid::now_v7().simple());
    let password = SecretString::from("correct horse battery staple");
    accounts
        .register(
            DEFAULT_TENANT_ID,
            Registration {
                email: email.clone(),
                password: password.clone(),
                full_name: "Tour Guide".to_owned(),
            },
        )
        .await?;
    let client = ClientContext::default();
    let tokens = accounts
        .login(DEFAULT_TENANT_ID, &email, &password, &client)
        .await?;
    println!("signed in: session {}", tokens.session_id);

    let me = accounts.authenticate(&tokens.access_token).await?;
    println!(
        "authenticated {} as {}",
        me.principal.user.email, me.principal.role
    );

    let next = accounts.refresh(&tokens.refresh_token, &client).await?;
    println!("refreshed: new refresh token issued, old one spent");
    // (With the default REFRESH_TOKEN_REUSE_SECONDS=5, a replay within 5 s would get `next` again.)

    match accounts.refresh(&tokens.refresh_token, &client).await {
        Err(AuthError::RefreshReused) => println!("replaying the spent token revoked the session"),
        other => println!("unexpected: {other:?}"),
    }
    assert!(accounts.authenticate(&next.access_token).await.is_err());
    println!("…so even the newest access token is refused now");
    Ok(())
}

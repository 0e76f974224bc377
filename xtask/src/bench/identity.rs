//! `bench identity`: a sign-in with an OpenID provider end to end at the server (callback and
//! code exchange, the provider's own time taken out) beside `GET /health` timed the same way, on
//! a release build, against the stand-in provider of the web tests; and TOTP verifications per
//! second on one core beside SHA-256 digests of a token.

use crate::run::{self, cmd, root};
use crate::{dev, web};

use super::{Server, migrate, release_builds, sovereign, superuser};

pub fn identity() -> Result<(), String> {
    web::ensure_node()?;
    web::build()?;
    run::run(web::npm(web::EXAMPLE_DIR).args(["run", "build:tests"]))?;
    release_builds("sovereign-auth", "totp_rate")?;
    let totp = run::output(cmd(root().join("target/release/examples/totp_rate")).arg("3"))?;

    let urls = dev::database_urls()?;
    migrate(&urls)?;
    dev::ensure_dev_role()?;
    let admin = superuser(&urls, "identity")?;
    let port = 19_000 + (std::process::id() % 1000) as u16;
    let api = format!("http://127.0.0.1:{port}");
    let return_to = "http://127.0.0.1:9/back";
    let log = run::state_dir().join("bench-identity-server.log");
    let mut server = sovereign(&urls, port, "warn");
    server
        .env("RATE_LIMIT_ENABLED", "false")
        .env("API_PUBLIC_URL", &api)
        .env("AUTH_REDIRECT_URLS", return_to)
        .env(
            "SECRET_KEY",
            "bench-only secret key, at least thirty-two bytes long",
        );
    let _server = Server::start(&mut server, port, &log)?;
    let sign_in = run::output(
        cmd("node")
            .current_dir(root().join(web::EXAMPLE_DIR))
            .arg("build/test/bench-identity.js")
            .env("SOVEREIGN_URL", &api)
            .env("BENCH_ADMIN", &admin)
            .env("BENCH_RETURN_TO", return_to),
    )?;
    println!("\n{}\n{}", sign_in.trim(), totp.trim());
    println!(
        "\nA provider sign-in is two requests to the server (the callback, which calls the \
         provider's token endpoint and validates its ID token, then the code exchange); the time \
         the stand-in provider spent answering is taken out. TOTP codes are checked on the async \
         workers: a verification costs about as much as a few SHA-256 digests, no hashing pool \
         needed. Shared 2-core machines are noisy: compare the ratios, not the absolute numbers."
    );
    Ok(())
}

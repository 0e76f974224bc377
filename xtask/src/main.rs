//! `cargo xtask …`: every chore of the project, each command doing one thing and printing what
//! it runs. Standard library only, so it builds in seconds.

mod bench;
mod ci;
mod deploy;
mod dev;
mod fuzz;
mod generated;
mod graph;
mod json;
mod licences;
mod nginx_conf;
mod pg;
mod python;
mod redis;
mod run;
mod web;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

  dev                 run the service with everything it needs (local PostgreSQL with pgvector
                      unless DATABASE_URL is set, migrations, docs at /docs)
  ci                  exactly what CI runs: fmt, the crate graph and its rules, clippy,
                      generated-file and licence checks, the whole test suite against real
                      PostgreSQL (+pgvector) and real Redis, and `web`
  db up|down|status   start, stop or inspect the project-local PostgreSQL cluster
  migrate [ARGS]      run `sovereign migrate ARGS` against the dev database (or DATABASE_URL)
  create-superuser ARGS  `sovereign create-superuser ARGS` against the dev database, e.g.
                      echo 'a long passphrase' | cargo xtask create-superuser --email E --password-stdin
  openapi [--check]   write docs/openapi.json from the code and regenerate the TypeScript
                      client's generated part from it (or check that both are current)
  schema [--check]    write crates/db/src/schema.rs from a migrated database (or check it)
  graph [--check]     draw the crate graph into docs/ARCHITECTURE.md from `cargo metadata` (or
                      check it is current) and check the dependency rules
  licences            check every dependency's licence against deny.toml (cargo-deny) and
                      that the third-party notices are current; offline
  notices [--check]   write deploy/THIRD-PARTY-NOTICES.txt from Cargo.lock (cargo-about), or
                      check it is current
  bench http          load-test GET /health on a release build (wrk, 64 connections)
  bench cache         GET/SET ops/s through sovereign-cache beside redis-benchmark on the same
                      Redis (REDIS_URL, default 127.0.0.1:6379), and the in-process backend
  bench auth          GET /api/v1/users/me with a token beside GET /health, and a login storm at
                      bcrypt cost 12 against the hashing limit while /health latency is measured
  bench vector        GloVe 6B 50-d (400k vectors) through the vector API: bulk upsert, index
                      build, recall@10 and QPS at 8 connections beside plain SQL on the same
                      index, exact and filtered search; the local embedder beside numpy
  bench memory        resident memory of one instance under 2 minutes of authenticated reads
                      with nobody scraping /metrics (listener off, then on): must stay flat
  bench ws            10,000 websockets on one channel: broadcast latency p50/p99, the highest
                      sustained delivery rate, memory per idle connection; then two instances
                      sharing Redis (BENCH_WS_CONNECTIONS to change the count)
  web                 the TypeScript client and the example app: npm ci, build, unit tests,
                      then Node tests (API key) and browser tests (Debian Chromium,
                      playwright-core) against a real server, PostgreSQL and Redis
  bench identity      a sign-in with an OpenID provider at the server (callback + code
                      exchange, the provider's time taken out) beside /health; TOTP
                      verifications per second per core beside SHA-256 digests
  bench sdk           min+gzip size of what an app imports for sign-in + realtime, beside
                      @supabase/supabase-js and pocketbase bundled the same way
  bench storage       a large object through the API beside the raw backend (file copy;
                      direct PUT/GET to moto), server memory while 8 clients upload, and
                      listing 1,000 keys of a 1,000,000-object bucket (BENCH_OBJECT_MIB,
                      BENCH_LIST_OBJECTS to change the sizes)
  fuzz                schemathesis (pinned) over every operation of the OpenAPI document as a
                      superadmin, against a release build: what the document says vs what
                      the server does (docs/development.md lists the rules it cannot state)
";

#[expect(
    clippy::print_stderr,
    reason = "a command-line tool reports failures on stderr"
)]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["dev"] => dev::run(),
        ["ci"] => ci::run(),
        ["db", "up"] => pg::up().map(|cluster| {
            println!("PostgreSQL is running: {}", cluster.admin_url());
        }),
        ["db", "down"] => pg::down(),
        ["db", "status"] => pg::status(),
        ["migrate", rest @ ..] => dev::migrate(rest),
        ["openapi"] => generated::openapi(false),
        ["openapi", "--check"] => generated::openapi(true),
        ["schema"] => generated::schema(false),
        ["schema", "--check"] => generated::schema(true),
        ["graph"] => graph::run(false),
        ["graph", "--check"] => graph::run(true),
        ["licences"] => licences::check(),
        ["notices"] => licences::notices(false),
        ["notices", "--check"] => licences::notices(true),
        ["bench", "http"] => bench::http(),
        ["bench", "cache"] => bench::cache(),
        ["bench", "auth"] => bench::auth(),
        ["bench", "vector"] => bench::vector(),
        ["bench", "ws"] => bench::ws(),
        ["bench", "memory"] => bench::memory(),
        ["bench", "sdk"] => bench::sdk(),
        ["bench", "identity"] => bench::identity(),
        ["bench", "storage"] => bench::storage(),
        ["fuzz"] => fuzz::run(),
        ["web"] => web::run(),
        ["create-superuser", rest @ ..] => dev::create_superuser(rest),
        ["help" | "--help" | "-h"] | [] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown command: {}\n\n{USAGE}", args.join(" "))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

//! `bench sdk`: what a web app ships for sign-in plus realtime, minified and gzipped, for the
//! Sovereign client beside `@supabase/supabase-js` and the PocketBase JS SDK, each bundled the
//! same way (esbuild, ESM, browser, minified, tree-shaken) from the same kind of entry point.
//! The peers are installed for the bench only, in `.sovereign/bench-sdk`, at exact versions.

use std::fs;
use std::path::Path;

use crate::run::{self, cmd, root, state_dir};
use crate::web;

const ESBUILD: &str = "0.28.2";
const SUPABASE: &str = "2.119.1";
const POCKETBASE: &str = "0.28.1";

/// Each entry: sign in with a password, then receive a channel's messages in realtime.
const ENTRIES: [(&str, &str); 3] = [
    (
        "sovereign",
        r#"import { createSovereign, localStorageStorage } from "SOVEREIGN";
const sovereign = createSovereign({ url: "https://api.example.com", storage: localStorageStorage() });
await sovereign.auth.signIn({ email: "ada@example.com", password: "correct horse battery staple" });
const realtime = sovereign.realtime();
await realtime.connect();
realtime.subscribe("public:news", { onMessage: (m) => console.log(m.payload) });
"#,
    ),
    (
        "supabase-js",
        r#"import { createClient } from "@supabase/supabase-js";
const supabase = createClient("https://api.example.com", "anon-key");
await supabase.auth.signInWithPassword({ email: "ada@example.com", password: "correct horse battery staple" });
supabase.channel("news").on("broadcast", { event: "*" }, (m) => console.log(m.payload)).subscribe();
"#,
    ),
    (
        "pocketbase",
        r#"import PocketBase from "pocketbase";
const pb = new PocketBase("https://api.example.com");
await pb.collection("users").authWithPassword("ada@example.com", "correct horse battery staple");
await pb.realtime.subscribe("news", (m) => console.log(m));
"#,
    ),
];

pub fn sdk() -> Result<(), String> {
    web::ensure_node()?;
    web::build()?;
    let dir = state_dir().join("bench-sdk");
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    write(
        &dir.join("package.json"),
        &format!(
            r#"{{ "private": true, "type": "module", "devDependencies": {{ "esbuild": "{ESBUILD}",
  "@supabase/supabase-js": "{SUPABASE}", "pocketbase": "{POCKETBASE}" }} }}
"#
        ),
    )?;
    run::run(cmd("npm").current_dir(&dir).args([
        "install",
        "--no-audit",
        "--no-fund",
        "--engine-strict=false",
    ]))?;
    let client = root().join(web::CLIENT_DIR).join("dist").join("index.js");
    let mut rows = Vec::new();
    for (name, source) in ENTRIES {
        let entry = dir.join(format!("{name}.entry.mjs"));
        write(
            &entry,
            &source.replace("SOVEREIGN", &client.display().to_string()),
        )?;
        let out = dir.join(format!("{name}.bundle.js"));
        run::run(
            cmd(dir.join("node_modules/.bin/esbuild"))
                .current_dir(&dir)
                .args([
                    entry.display().to_string().as_str(),
                    "--bundle",
                    "--minify",
                    "--format=esm",
                    "--platform=browser",
                    "--target=es2022",
                    "--log-level=warning",
                    &format!("--outfile={}", out.display()),
                ]),
        )?;
        let bytes = fs::read(&out).map_err(|e| format!("read {}: {e}", out.display()))?;
        rows.push((name, bytes.len(), gzipped(&out)?));
    }
    let ours = rows[0].2 as f64;
    println!("\nsign-in + realtime, bundled with esbuild {ESBUILD} (minified, tree-shaken):");
    println!(
        "{:<28} {:>10} {:>10} {:>12}",
        "client", "min", "min+gzip", "÷ Sovereign"
    );
    for (name, min, gz) in &rows {
        let version = match *name {
            "supabase-js" => SUPABASE,
            "pocketbase" => POCKETBASE,
            _ => "(this repository)",
        };
        println!(
            "{:<28} {:>8.1}kB {:>8.1}kB {:>11.2}×",
            format!("{name} {version}"),
            *min as f64 / 1000.0,
            *gz as f64 / 1000.0,
            *gz as f64 / ours
        );
    }
    coverage()
}

/// Operations in the OpenAPI document beside typed functions generated for them, and the frames.
fn coverage() -> Result<(), String> {
    let document =
        fs::read_to_string(root().join("docs/openapi.json")).map_err(|e| e.to_string())?;
    let operations = document.matches("\"operationId\":").count();
    let sdk = fs::read_to_string(
        root()
            .join(web::CLIENT_DIR)
            .join("src/generated/sdk.gen.ts"),
    )
    .map_err(|e| e.to_string())?;
    let functions = sdk
        .lines()
        .filter(|l| l.starts_with("export const "))
        .count();
    let types = fs::read_to_string(
        root()
            .join(web::CLIENT_DIR)
            .join("src/generated/types.gen.ts"),
    )
    .map_err(|e| e.to_string())?;
    let frames = ["export type ClientFrame", "export type ServerFrame"]
        .iter()
        .filter(|t| types.contains(*t))
        .count();
    println!(
        "\ntyped: {functions} generated functions for {operations} operations in the document; \
         {frames} of 2 frame unions (ClientFrame, ServerFrame)"
    );
    Ok(())
}

fn gzipped(path: &Path) -> Result<usize, String> {
    let script = "const z=require('zlib'),f=require('fs');\
                  process.stdout.write(String(z.gzipSync(f.readFileSync(process.argv[1]),{level:9}).length))";
    let size = run::output(cmd("node").args(["-e", script, &path.display().to_string()]))?;
    size.trim()
        .parse()
        .map_err(|e| format!("gzip size {size:?}: {e}"))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

//! A runnable copy of the shipped nginx site (`deploy/nginx/sovereign.conf`) for checks and
//! tests: the same file with its ports, certificate and log paths moved into a scratch
//! directory, inside a minimal main configuration. Shared (by `#[path]`) between `cargo xtask
//! ci`, which runs `nginx -t` on it, and the end-to-end test, which serves through it. Every
//! replacement must match, so a change to the shipped file that these do not follow fails
//! loudly instead of testing something else.

use std::path::Path;

/// Where and how the local copy runs.
pub struct Local<'a> {
    pub dir: &'a Path,
    pub http_port: u16,
    pub https_port: u16,
    pub upstream_port: u16,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// The shipped site with local ports and paths.
pub fn site(shipped: &str, local: &Local<'_>) -> Result<String, String> {
    let dir = local.dir.display();
    let replacements = [
        (
            "server 127.0.0.1:8000;".to_owned(),
            format!("server 127.0.0.1:{};", local.upstream_port),
        ),
        (
            "listen 80;".to_owned(),
            format!("listen 127.0.0.1:{};", local.http_port),
        ),
        ("listen [::]:80;".to_owned(), String::new()),
        (
            "listen 443 ssl http2;".to_owned(),
            format!("listen 127.0.0.1:{} ssl http2;", local.https_port),
        ),
        ("listen [::]:443 ssl http2;".to_owned(), String::new()),
        (
            "/etc/letsencrypt/live/api.example.com/fullchain.pem".to_owned(),
            local.cert.display().to_string(),
        ),
        (
            "/etc/letsencrypt/live/api.example.com/privkey.pem".to_owned(),
            local.key.display().to_string(),
        ),
        ("/var/log/nginx/".to_owned(), format!("{dir}/")),
    ];
    let mut out = shipped.to_owned();
    for (from, to) in replacements {
        if !out.contains(&from) {
            return Err(format!(
                "the shipped nginx site no longer contains `{from}`"
            ));
        }
        out = out.replace(&from, &to);
    }
    Ok(out)
}

/// A main configuration that runs in the foreground, as one process, entirely inside `dir`,
/// and includes `site`.
pub fn main_conf(dir: &Path, site: &Path) -> String {
    let dir = dir.display();
    format!(
        "daemon off;\nmaster_process off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         client_body_temp_path {dir}/client_body;\n\
         proxy_temp_path {dir}/proxy;\n\
         fastcgi_temp_path {dir}/fastcgi;\n\
         uwsgi_temp_path {dir}/uwsgi;\n\
         scgi_temp_path {dir}/scgi;\n\
         access_log {dir}/access.log;\n\
         include {};\n\
         }}\n",
        site.display()
    )
}

/// `openssl req` arguments for a one-day self-signed P-256 certificate for localhost and
/// 127.0.0.1.
pub fn self_signed_args(cert: &Path, key: &Path) -> Vec<String> {
    [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        // An end-entity certificate (clients trust it directly), not a CA.
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-addext",
        "extendedKeyUsage=serverAuth",
        "-keyout",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([
        key.display().to_string(),
        "-out".to_owned(),
        cert.display().to_string(),
    ])
    .collect()
}

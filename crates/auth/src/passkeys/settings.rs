//! The passkey settings: the relying party (its id, a domain, and name) and the exact origins
//! whose pages may use the passkeys.

use sovereign_core::setting;
use sovereign_core::settings::DefaultValue::{Computed, Value};
use sovereign_core::settings::Reader;
use url::Url;

setting!(
    WEBAUTHN_RP_ID,
    "WEBAUTHN_RP_ID",
    Computed("the host of PUBLIC_URL"),
    "The relying party id of passkeys: the domain they belong to (`example.com` serves `app.example.com` too). Passkeys made under one id do not work under another."
);
setting!(
    WEBAUTHN_RP_NAME,
    "WEBAUTHN_RP_NAME",
    Value("Sovereign"),
    "The name authenticators show for passkeys of this server."
);
setting!(
    WEBAUTHN_ORIGINS,
    "WEBAUTHN_ORIGINS",
    Computed("the origin of PUBLIC_URL"),
    "Comma-separated origins (`https://app.example.com`) whose pages may register and use passkeys, matched exactly (port included); each must be the relying party id or under it."
);

/// Passkeys (WebAuthn).
#[derive(Debug, Clone)]
pub struct PasskeySettings {
    pub rp_id: String,
    pub rp_name: String,
    pub origins: Vec<Url>,
}

impl Default for PasskeySettings {
    fn default() -> Self {
        Self {
            rp_id: "localhost".to_owned(),
            rp_name: "Sovereign".to_owned(),
            origins: vec![Url::parse("http://localhost:8000").unwrap_or_else(|_| unreachable!())],
        }
    }
}

pub(crate) fn read_passkeys(r: &mut Reader<'_>, public_url: &str) -> PasskeySettings {
    let public = Url::parse(public_url).ok();
    let explicit = r.raw(&WEBAUTHN_RP_ID).is_some() || r.raw(&WEBAUTHN_ORIGINS).is_some();
    let rp_id = r
        .raw(&WEBAUTHN_RP_ID)
        .map(|id| id.trim().to_ascii_lowercase())
        .or_else(|| {
            public
                .as_ref()
                .and_then(|u| u.host_str().map(str::to_owned))
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let rp_name: String = r.value(&WEBAUTHN_RP_NAME);
    let origins: Vec<Url> = match r.raw(&WEBAUTHN_ORIGINS) {
        Some(list) => {
            let mut origins = Vec::new();
            for text in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                match Url::parse(text) {
                    Ok(url) if url.origin().is_tuple() => origins.push(url),
                    _ => r.problem(
                        WEBAUTHN_ORIGINS.name,
                        format!("`{text}` is not an origin"),
                        "list origins such as https://app.example.com".to_owned(),
                    ),
                }
            }
            origins
        }
        None => public.into_iter().collect(),
    };
    // Explicit settings that cannot work stop the server; defaults derived from PUBLIC_URL
    // only warn (passkeys then do not work, everything else does).
    let report = |r: &mut Reader<'_>, name: &'static str, message: String, fix: &str| {
        if explicit {
            r.problem(name, message, fix.to_owned());
        } else {
            r.warning(
                name,
                format!("{message}: passkeys will not work"),
                fix.to_owned(),
            );
        }
    };
    for origin in &origins {
        let host = origin.host_str().unwrap_or_default();
        if host != rp_id && !host.ends_with(&format!(".{rp_id}")) {
            report(
                r,
                WEBAUTHN_ORIGINS.name,
                format!("`{origin}` is not under the relying party id `{rp_id}`"),
                "set WEBAUTHN_RP_ID to a domain every origin is, or is under",
            );
        }
    }
    if rp_id.parse::<std::net::IpAddr>().is_ok() {
        report(
            r,
            WEBAUTHN_RP_ID.name,
            format!("`{rp_id}` is an IP address; browsers accept only domains"),
            "use a host name (`localhost` in development)",
        );
    }
    PasskeySettings {
        rp_id,
        rp_name,
        origins,
    }
}

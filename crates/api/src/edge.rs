//! The edge: who the client is, whether the request arrived over HTTPS, and the security
//! headers every response carries. Pure functions; the middleware applies them.
//!
//! Forwarding headers (`Forwarded`, `X-Forwarded-For`, `X-Forwarded-Proto`) are believed only
//! when the socket peer is a trusted proxy. The client is then the right-most hop that is not a
//! trusted proxy: everything left of it was written by parties we cannot vouch for, so a client
//! that sends its own `X-Forwarded-For` can never choose the address its requests are counted
//! under.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

/// Facts about the client, resolved once per request by the request-context middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address, as far as trusted proxies can vouch for it.
    pub ip: IpAddr,
    /// True when the request reached us (or the trusted proxy in front of us) over HTTPS.
    pub https: bool,
}

/// What the edge needs from the settings, shared by all workers.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub trusted_proxies: Vec<IpNet>,
    /// HSTS is sent only in production.
    pub production: bool,
}

impl EdgeConfig {
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Resolves the client from the socket peer and, when the peer is trusted, the
    /// forwarding headers.
    #[must_use]
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> ClientInfo {
        let peer = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), canonical);
        if !self.trusts(peer) {
            return ClientInfo {
                ip: peer,
                https: false,
            };
        }
        let forwarded = forwarded_elements(headers);
        let (hops, proto) = if forwarded.is_empty() {
            (x_forwarded_for(headers), x_forwarded_proto(headers))
        } else {
            let proto = forwarded.last().and_then(|e| e.proto.clone());
            (forwarded.into_iter().map(|e| e.for_node).collect(), proto)
        };
        // Walk from the nearest hop outwards; stop at the first one we do not trust. An
        // unparsable hop ends the walk: the last address we could vouch for is the client.
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop.as_deref().and_then(parse_node) {
                Some(ip) => {
                    client = ip;
                    if !self.trusts(ip) {
                        break;
                    }
                }
                None => break,
            }
        }
        ClientInfo {
            ip: client,
            https: proto.is_some_and(|p| p.eq_ignore_ascii_case("https")),
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`, `[2001:db8::1]:8080`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inner, _) = rest.split_once(']')?;
        return inner.parse::<IpAddr>().ok().map(canonical);
    }
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Every value of a comma-separated header, in order, across repeated header lines.
fn list_values(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .collect()
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<String>> {
    list_values(headers, &X_FORWARDED_FOR)
        .into_iter()
        .map(Some)
        .collect()
}

fn x_forwarded_proto(headers: &HeaderMap) -> Option<String> {
    list_values(headers, &X_FORWARDED_PROTO).pop()
}

struct ForwardedElement {
    for_node: Option<String>,
    proto: Option<String>,
}

/// RFC 7239 `Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::1]:4711"`.
fn forwarded_elements(headers: &HeaderMap) -> Vec<ForwardedElement> {
    list_values(headers, &header::FORWARDED)
        .iter()
        .map(|element| {
            let mut parsed = ForwardedElement {
                for_node: None,
                proto: None,
            };
            for pair in element.split(';') {
                if let Some((key, value)) = pair.split_once('=') {
                    let value = value.trim().trim_matches('"').to_owned();
                    match key.trim().to_ascii_lowercase().as_str() {
                        "for" => parsed.for_node = Some(value),
                        "proto" => parsed.proto = Some(value),
                        _ => {}
                    }
                }
            }
            parsed
        })
        .collect()
}

/// The Content-Security-Policy of API responses: nothing may load, nothing may frame them.
const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/// The docs UI's: its own scripts, styles (Swagger UI sets inline styles), images and calls
/// to the API, nothing from elsewhere.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
base-uri 'none'; form-action 'self'";
const PERMISSIONS_POLICY: &str = "accelerometer=(), camera=(), geolocation=(), gyroscope=(), \
magnetometer=(), microphone=(), payment=(), usb=(), interest-cohort=()";
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Adds the security headers to a response for `path`. Headers a handler set itself are kept.
pub fn apply_security_headers(
    headers: &mut HeaderMap,
    path: &str,
    client: ClientInfo,
    config: &EdgeConfig,
) {
    let docs = path == "/docs" || path.starts_with("/docs/");
    let mut set = |name: HeaderName, value: &'static str| {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    };
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "no-referrer");
    set(
        HeaderName::from_static("permissions-policy"),
        PERMISSIONS_POLICY,
    );
    set(
        header::CONTENT_SECURITY_POLICY,
        if docs { DOCS_CSP } else { API_CSP },
    );
    set(
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if config.production && client.https {
        set(header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn config(trusted: &[&str]) -> EdgeConfig {
        EdgeConfig {
            trusted_proxies: trusted
                .iter()
                .map(|t| {
                    t.parse()
                        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                        .unwrap()
                })
                .collect(),
            production: true,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("forwarded", "for=2.2.2.2;proto=https"),
            ("x-forwarded-proto", "https"),
        ]);
        let client = config(&[]).client(Some(ip("198.51.100.9")), &h);
        assert_eq!(
            client,
            ClientInfo {
                ip: ip("198.51.100.9"),
                https: false
            }
        );
        let client = config(&["10.0.0.0/8"]).client(Some(ip("198.51.100.9")), &h);
        assert_eq!(client.ip, ip("198.51.100.9"));
    }

    #[test]
    fn behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client() {
        let edge = config(&["10.0.0.0/8", "127.0.0.1/32"]);
        // The client forged the first entry; our proxy appended the real address.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.5, 10.1.1.1")]);
        assert_eq!(edge.client(Some(ip("127.0.0.1")), &h).ip, ip("203.0.113.5"));
        // Repeated header lines are one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.5"),
        ]);
        assert_eq!(edge.client(Some(ip("10.0.0.2")), &h).ip, ip("203.0.113.5"));
        // Only proxies all the way: the left-most is the best we know.
        let h = headers(&[("x-forwarded-for", "10.0.0.7, 10.0.0.8")]);
        assert_eq!(edge.client(Some(ip("10.0.0.2")), &h).ip, ip("10.0.0.7"));
        // No header: the proxy itself.
        assert_eq!(
            edge.client(Some(ip("10.0.0.2")), &HeaderMap::new()).ip,
            ip("10.0.0.2")
        );
    }

    #[test]
    fn garbage_hops_stop_the_walk_at_the_last_address_we_can_vouch_for() {
        let edge = config(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.5, not-an-ip, 10.0.0.9")]);
        assert_eq!(edge.client(Some(ip("10.0.0.1")), &h).ip, ip("10.0.0.9"));
        let h = headers(&[("x-forwarded-for", "unknown")]);
        assert_eq!(edge.client(Some(ip("10.0.0.1")), &h).ip, ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_is_preferred_and_its_forms_parse() {
        let edge = config(&["10.0.0.0/8"]);
        let h = headers(&[
            (
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https;by=10.0.0.1",
            ),
            ("x-forwarded-for", "7.7.7.7"),
        ]);
        let client = edge.client(Some(ip("10.0.0.1")), &h);
        assert_eq!(
            client,
            ClientInfo {
                ip: ip("2001:db8::1"),
                https: true
            }
        );
        let h = headers(&[("forwarded", "for=192.0.2.60:8080;proto=http")]);
        let client = edge.client(Some(ip("10.0.0.1")), &h);
        assert_eq!(
            client,
            ClientInfo {
                ip: ip("192.0.2.60"),
                https: false
            }
        );
    }

    #[test]
    fn x_forwarded_proto_counts_only_from_a_trusted_proxy() {
        let h = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "203.0.113.5"),
        ]);
        assert!(
            config(&["127.0.0.1"])
                .client(Some(ip("127.0.0.1")), &h)
                .https
        );
        assert!(!config(&[]).client(Some(ip("127.0.0.1")), &h).https);
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks() {
        let edge = config(&["127.0.0.1/32"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.5")]);
        assert_eq!(
            edge.client(Some(ip("::ffff:127.0.0.1")), &h).ip,
            ip("203.0.113.5")
        );
    }

    #[test]
    fn api_and_docs_get_their_own_policies_and_hsts_needs_production_and_https() {
        let https = ClientInfo {
            ip: ip("127.0.0.1"),
            https: true,
        };
        let plain = ClientInfo {
            https: false,
            ..https
        };
        let mut api = HeaderMap::new();
        apply_security_headers(&mut api, "/api/v1/x", https, &config(&[]));
        assert_eq!(api.get(header::CONTENT_SECURITY_POLICY).unwrap(), API_CSP);
        assert_eq!(api.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
        assert_eq!(api.get(header::STRICT_TRANSPORT_SECURITY).unwrap(), HSTS);
        let mut docs = HeaderMap::new();
        apply_security_headers(&mut docs, "/docs/index.html", plain, &config(&[]));
        assert_eq!(docs.get(header::CONTENT_SECURITY_POLICY).unwrap(), DOCS_CSP);
        assert!(!docs.contains_key(header::STRICT_TRANSPORT_SECURITY));
        let mut dev = HeaderMap::new();
        let development = EdgeConfig {
            production: false,
            ..config(&[])
        };
        apply_security_headers(&mut dev, "/", https, &development);
        assert!(!dev.contains_key(header::STRICT_TRANSPORT_SECURITY));
    }
}

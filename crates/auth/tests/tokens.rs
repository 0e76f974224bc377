//! Access tokens against hostile input (RFC 8725): every forged, confused or stale token below
//! must be refused, and the genuine ones accepted.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sovereign_auth::opaque::{self, Kind};
use sovereign_auth::{Role, TokenKeys, User};
use uuid::Uuid;

const ISS: &str = "sovereign";
const AUD: &str = "sovereign-api";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-only";
const KEY_A: &str = include_str!("data/ed25519-a.pem");
const PUB_A: &str = include_str!("data/ed25519-a.pub.pem");
const KEY_B: &str = include_str!("data/ed25519-b.pem");
const PUB_B: &str = include_str!("data/ed25519-b.pub.pem");

fn user() -> User {
    let now = Utc::now();
    User {
        id: Uuid::now_v7(),
        tenant_id: Uuid::from_u128(1),
        email: "ada@example.com".to_owned(),
        full_name: String::new(),
        role: Role::User,
        is_active: true,
        email_verified: true,
        created_at: now,
        updated_at: now,
    }
}

fn hs() -> TokenKeys {
    TokenKeys::hs256(SECRET, ISS, AUD, Duration::from_secs(900))
}

fn ed() -> TokenKeys {
    TokenKeys::eddsa(KEY_A, &[], ISS, AUD, Duration::from_secs(900)).unwrap()
}

fn claims() -> Value {
    let now = Utc::now().timestamp();
    json!({
        "iss": ISS, "aud": AUD, "sub": Uuid::now_v7(), "tenant": Uuid::from_u128(1),
        "role": "superadmin", "sid": Uuid::now_v7(), "jti": Uuid::now_v7(),
        "iat": now, "nbf": now, "exp": now + 600
    })
}

fn header(alg: Algorithm, typ: Option<&str>) -> Header {
    let mut h = Header::new(alg);
    h.typ = typ.map(str::to_owned);
    h
}

fn hs_sign(h: &Header, c: &Value) -> String {
    jsonwebtoken::encode(h, c, &EncodingKey::from_secret(SECRET)).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[test]
fn genuine_tokens_verify() {
    for keys in [hs(), ed()] {
        let u = user();
        let sid = Uuid::now_v7();
        let token = keys.issue(&u, sid).unwrap();
        let claims = keys.verify(&token.token).unwrap();
        assert_eq!(
            (claims.sub, claims.sid, claims.tenant),
            (u.id, sid, u.tenant_id)
        );
        assert_eq!(claims.role, Role::User);
        assert_eq!((claims.iss.as_str(), claims.aud.as_str()), (ISS, AUD));
        assert!(claims.nbf <= claims.iat && claims.exp > claims.iat);
        let header = jsonwebtoken::decode_header(&token.token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    }
}

#[test]
fn alg_none_in_any_spelling_is_refused() {
    let keys = hs();
    for alg in ["none", "None", "NoNe", "NONE"] {
        let forged = format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "typ": "at+jwt"})),
            b64(&claims())
        );
        assert!(keys.verify(&forged).is_err(), "alg {alg}");
        let with_sig = format!("{forged}c2lnbmF0dXJl");
        assert!(
            keys.verify(&with_sig).is_err(),
            "alg {alg} with a signature"
        );
    }
}

#[test]
fn other_algorithms_are_refused_even_when_correctly_signed() {
    let keys = hs();
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = jsonwebtoken::encode(
            &header(alg, Some("at+jwt")),
            &claims(),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(keys.verify(&token).is_err(), "{alg:?}");
    }
    // An EdDSA server refuses HS256, including HS256 keyed with its own public key (the
    // classic key-confusion attack).
    let keys = ed();
    let kid = keys.jwks().keys[0].common.key_id.clone();
    for secret in [PUB_A.as_bytes(), PUB_A.trim().as_bytes(), SECRET] {
        let mut h = header(Algorithm::HS256, Some("at+jwt"));
        h.kid.clone_from(&kid);
        let token = jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(secret)).unwrap();
        assert!(keys.verify(&token).is_err());
    }
}

#[test]
fn time_claims_are_required_and_checked() {
    let keys = hs();
    let h = header(Algorithm::HS256, Some("at+jwt"));
    let now = Utc::now().timestamp();
    let mut c = claims();
    assert!(
        keys.verify(&hs_sign(&h, &c)).is_ok(),
        "the control token verifies"
    );

    c["exp"] = json!(now - 120);
    assert!(keys.verify(&hs_sign(&h, &c)).is_err(), "expired");
    c["exp"] = json!(now - 5);
    assert!(
        keys.verify(&hs_sign(&h, &c)).is_ok(),
        "within the 30 s leeway"
    );

    let mut c = claims();
    c["nbf"] = json!(now + 120);
    assert!(keys.verify(&hs_sign(&h, &c)).is_err(), "not yet valid");

    let mut c = claims();
    c["exp"] = json!((now + 600).to_string());
    assert!(keys.verify(&hs_sign(&h, &c)).is_err(), "string exp");

    for missing in ["exp", "nbf", "iat", "sub"] {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(missing);
        assert!(keys.verify(&hs_sign(&h, &c)).is_err(), "missing {missing}");
    }
}

#[test]
fn issuer_and_audience_are_required_and_checked() {
    let keys = hs();
    let h = header(Algorithm::HS256, Some("at+jwt"));
    for (claim, value) in [
        ("aud", Value::Null),
        ("aud", json!("someone-else")),
        ("aud", json!(["someone-else"])),
        ("iss", Value::Null),
        ("iss", json!("https://evil.example")),
    ] {
        let mut c = claims();
        if value.is_null() {
            c.as_object_mut().unwrap().remove(claim);
        } else {
            c[claim] = value.clone();
        }
        assert!(keys.verify(&hs_sign(&h, &c)).is_err(), "{claim} = {value}");
    }
}

#[test]
fn only_access_tokens_pass_as_access_tokens() {
    let keys = hs();
    for typ in [
        None,
        Some("JWT"),
        Some("rt+jwt"),
        Some("ws+jwt"),
        Some("at+jwt+x"),
    ] {
        let token = hs_sign(&header(Algorithm::HS256, typ), &claims());
        assert!(keys.verify(&token).is_err(), "typ {typ:?}");
    }
    let tenant = Uuid::from_u128(1);
    for kind in [
        Kind::Refresh,
        Kind::PasswordReset,
        Kind::EmailVerification,
        Kind::ApiKey,
    ] {
        let opaque = opaque::mint(kind, tenant).token;
        assert!(keys.verify(&opaque).is_err(), "{kind:?}");
    }
}

#[test]
fn key_headers_are_ignored_and_kid_only_selects_configured_keys() {
    let keys = ed();
    let attacker = EncodingKey::from_ed_pem(KEY_B.as_bytes()).unwrap();
    // Signed by a key the server does not know, whatever the header claims about it.
    for kid in [
        None,
        keys.jwks().keys[0].common.key_id.clone(),
        Some("../../../../dev/null".to_owned()),
        Some("' OR '1'='1".to_owned()),
    ] {
        let mut h = header(Algorithm::EdDSA, Some("at+jwt"));
        h.kid = kid.clone();
        h.jku = Some("https://evil.example/jwks.json".to_owned());
        h.x5u = Some("https://evil.example/cert.pem".to_owned());
        h.jwk =
            Some(jsonwebtoken::jwk::Jwk::from_encoding_key(&attacker, Algorithm::EdDSA).unwrap());
        let token = jsonwebtoken::encode(&h, &claims(), &attacker).unwrap();
        assert!(keys.verify(&token).is_err(), "kid {kid:?}");
    }
}

#[test]
fn rotation_keeps_old_keys_verifying_only_while_configured() {
    let old = TokenKeys::eddsa(KEY_B, &[], ISS, AUD, Duration::from_secs(900)).unwrap();
    let token = old.issue(&user(), Uuid::now_v7()).unwrap().token;

    let rotated = TokenKeys::eddsa(
        KEY_A,
        &[PUB_B.to_owned()],
        ISS,
        AUD,
        Duration::from_secs(900),
    )
    .unwrap();
    assert!(
        rotated.verify(&token).is_ok(),
        "the previous key still verifies"
    );
    assert_eq!(rotated.jwks().keys.len(), 2, "both keys are published");
    let fresh = rotated.issue(&user(), Uuid::now_v7()).unwrap().token;
    assert_eq!(
        jsonwebtoken::decode_header(&fresh).unwrap().kid,
        rotated.jwks().keys[0].common.key_id,
        "new tokens are signed with the current key"
    );

    let done = ed();
    assert!(
        done.verify(&token).is_err(),
        "once dropped, the old key verifies nothing"
    );
    assert!(done.verify(&fresh).is_ok());
    // The public half of the current key is never also listed as an extra.
    let same =
        TokenKeys::eddsa(KEY_A, &[PUB_A.to_owned()], ISS, AUD, Duration::from_secs(9)).unwrap();
    assert_eq!(same.jwks().keys.len(), 1);
}

#[test]
fn hs256_publishes_no_keys() {
    assert!(hs().jwks().keys.is_empty());
    let jwks = serde_json::to_value(ed().jwks()).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "no private part");
}

#[test]
fn assurance_claims_cannot_be_raised_without_the_key() {
    let keys = TokenKeys::hs256(
        b"0123456789abcdef0123456789abcdef-test-only",
        "sovereign",
        "sovereign-api",
        Duration::from_secs(900),
    );
    let token = keys.issue(&user(), Uuid::now_v7()).unwrap().token;
    let claims = keys.verify(&token).unwrap();
    assert_eq!(claims.assurance().aal, sovereign_auth::Aal::Aal1);
    assert_eq!(claims.assurance().amr, vec!["pwd".to_owned()]);
    let parts: Vec<&str> = token.split('.').collect();
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    for (claim, value) in [
        ("aal", json!("aal2")),
        ("amr", json!(["pwd", "otp"])),
        ("auth_time", json!(4_102_444_800_i64)),
    ] {
        let mut tampered = payload.clone();
        tampered[claim] = value;
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered).unwrap()),
            parts[2]
        );
        assert!(
            keys.verify(&forged).is_err(),
            "a raised `{claim}` must not verify"
        );
    }
    // Re-signed with another key, it is refused too.
    let other = TokenKeys::hs256(
        b"another-key-of-thirty-two-bytes-or-more!",
        "sovereign",
        "sovereign-api",
        Duration::from_secs(900),
    );
    let reissued = other.issue(&user(), Uuid::now_v7()).unwrap().token;
    assert!(keys.verify(&reissued).is_err());
}

//! EdDSA tokens against an independent implementation: PyJWT verifies our tokens from the
//! published JWKS document, and forges hostile variants that the server must refuse.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::{TestApp, expect_problem, python, tempdir};

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../auth/tests/data")
        .join(name)
}

#[tokio::test]
async fn pyjwt_verifies_our_tokens_and_its_forgeries_are_refused() {
    let private = key_file("ed25519-a.pem");
    let app =
        TestApp::spawn_with(&[("JWT_PRIVATE_KEY_FILE", private.to_str().unwrap())], None).await;
    let tokens = app.signup("jwks@example.com").await;

    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status(), 200);
    let jwks: Value = jwks.json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "no private key material"
    );

    let dir = tempdir();
    let (jwks_file, token_file) = (dir.join("jwks.json"), dir.join("token"));
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    std::fs::write(&token_file, &tokens.access).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/py/tokens.py");
    let output = std::process::Command::new(python())
        .arg(script)
        .args([
            &jwks_file,
            &token_file,
            &private,
            &key_file("ed25519-a.pub.pem"),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    let me: Value = app
        .get_auth("/api/v1/users/me", &tokens.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["verified"]["sub"], me["id"]);
    assert_eq!(report["verified"]["tenant"], me["tenant_id"]);
    assert_eq!(report["verified"]["sid"], tokens.session.as_str());
    assert_eq!(report["verified"]["role"], "user");
    assert_eq!(report["verified"]["aal"], "aal1");
    assert_eq!(report["verified"]["amr"], serde_json::json!(["pwd"]));
    assert!(report["verified"]["auth_time"].is_i64());
    assert!(report["verified"]["jti"].is_string());
    assert_eq!(report["header"]["typ"], "at+jwt");
    assert_eq!(report["header"]["alg"], "EdDSA");

    // A well-formed token PyJWT signed with the server's key is accepted: the refusals below
    // are about what was forged, not about PyJWT's encoding.
    let control = report["control"].as_str().unwrap();
    assert_eq!(
        app.get_auth("/api/v1/users/me", control).await.status(),
        200
    );
    let forged = report["forged"].as_object().unwrap();
    assert_eq!(forged.len(), 17);
    for (name, token) in forged {
        let response = app
            .get_auth("/api/v1/users/me", token.as_str().unwrap())
            .await;
        assert_eq!(response.status(), 401, "{name}");
        expect_problem(response, 401, "invalid_token").await;
    }
}

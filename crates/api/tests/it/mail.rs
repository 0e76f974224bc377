//! The SMTP mailer against a real SMTP server (Python's aiosmtpd, storing to a Maildir).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestApp, closed_port, python, tempdir};

struct SmtpServer {
    child: Child,
    port: u16,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn smtp_server(maildir: &Path) -> SmtpServer {
    let port = closed_port();
    let child = Command::new(python())
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("aiosmtpd starts");
    let server = SmtpServer { child, port };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "aiosmtpd did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
}

/// Waits for the first message to arrive in the Maildir and returns its raw text.
async fn first_message(maildir: &Path) -> String {
    let new = maildir.join("new");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(entry) = std::fs::read_dir(&new).ok().and_then(|mut d| d.next()) {
            return std::fs::read_to_string(entry.unwrap().path()).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "no mail arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn verification_mail_travels_over_smtp_and_its_link_works() {
    let maildir = tempdir().join("Maildir");
    let server = smtp_server(&maildir).await;
    let port = server.port.to_string();
    let app = TestApp::spawn_with(
        &[
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", &port),
            ("SMTP_TLS", "none"),
            ("EMAILS_FROM", "Sovereign <no-reply@sovereign.test>"),
            ("PUBLIC_URL", "https://app.sovereign.test/"),
        ],
        None,
    )
    .await;
    let tokens = app.signup("smtp@example.com").await;
    assert!(app.outbox.sent().is_empty(), "the real mailer was used");

    let message = first_message(&maildir).await;
    assert!(message.contains("To: smtp@example.com"), "{message}");
    assert!(
        message.contains("From: Sovereign <no-reply@sovereign.test>"),
        "{message}"
    );
    assert!(
        message.contains("Subject: Confirm your email address"),
        "{message}"
    );
    // Quoted-printable: soft line breaks, and `=` itself as `=3D`.
    let unfolded = message
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    assert!(
        unfolded.contains("https://app.sovereign.test/verify-email?token=sovev_"),
        "{message}"
    );
    let token = sovereign_auth::mailer::token_in(&unfolded).unwrap();

    let confirmed = app
        .post_json(
            "/api/v1/auth/verify-email/confirm",
            None,
            json!({"token": token}),
        )
        .await;
    assert_eq!(confirmed.status(), 204);
    let me: Value = app
        .get_auth("/api/v1/users/me", &tokens.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email_verified"], true);
    drop(server);
    std::fs::remove_dir_all(maildir.parent().unwrap()).unwrap();
}

//! Sending mail: the [`Mailer`] interface, SMTP (lettre), a logging mailer for development and
//! an in-memory [`Outbox`] for tests.

use std::sync::{Arc, Mutex};

use crate::settings::{MailSettings, SmtpTls};
use futures_util::future::BoxFuture;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::AuthError;

/// A plain-text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Something that delivers [`Email`]s.
pub trait Mailer: Send + Sync + std::fmt::Debug {
    fn send<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<(), AuthError>>;
}

/// The mailer the settings ask for: SMTP when `SMTP_HOST` is set, the log otherwise. Only in
/// development does the log get the message bodies (their links carry tokens).
pub fn from_settings(settings: &MailSettings) -> Result<Arc<dyn Mailer>, AuthError> {
    match &settings.smtp {
        Some(_) => Ok(Arc::new(SmtpMailer::new(settings)?)),
        None => {
            if !settings.log_bodies {
                tracing::warn!(
                    "SMTP_HOST is unset: password-reset and verification mail is not delivered"
                );
            }
            Ok(Arc::new(LogMailer {
                bodies: settings.log_bodies,
            }))
        }
    }
}

/// Writes mail to the log instead of sending it. With `bodies` (development) the whole message,
/// links and their tokens included; otherwise only that a message was dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogMailer {
    pub bodies: bool,
}

impl Mailer for LogMailer {
    fn send<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async move {
            if self.bodies {
                tracing::info!(
                    to = %email.to,
                    subject = %email.subject,
                    body = %email.body,
                    "mail not sent (SMTP_HOST is unset); logged instead"
                );
            } else {
                tracing::warn!(subject = %email.subject, "mail dropped: SMTP_HOST is unset");
            }
            Ok(())
        })
    }
}

/// SMTP through lettre: STARTTLS, implicit TLS, or plain for a relay on localhost.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    pub fn new(settings: &MailSettings) -> Result<Self, AuthError> {
        let smtp = settings
            .smtp
            .as_ref()
            .ok_or_else(|| AuthError::Config("SMTP_HOST is not set".to_owned()))?;
        let config = |e: lettre::transport::smtp::Error| AuthError::Config(format!("SMTP: {e}"));
        let builder = match smtp.tls {
            SmtpTls::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host).map_err(config)?
            }
            SmtpTls::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(config)?
            }
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        };
        let mut builder = builder
            .port(smtp.port)
            .timeout(Some(std::time::Duration::from_secs(10)));
        if let (Some(user), Some(password)) = (&smtp.user, &smtp.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        let from = settings
            .from
            .parse::<Mailbox>()
            .map_err(|e| AuthError::Config(format!("EMAILS_FROM: {e}")))?;
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }
}

impl Mailer for SmtpMailer {
    fn send<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async move {
            let to = email
                .to
                .parse::<Mailbox>()
                .map_err(|e| AuthError::Config(format!("recipient: {e}")))?;
            let message = Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(email.subject.clone())
                .body(email.body.clone())
                .map_err(|e| AuthError::Config(format!("message: {e}")))?;
            self.transport
                .send(message)
                .await
                .map_err(|e| AuthError::Config(format!("SMTP delivery failed: {e}")))?;
            Ok(())
        })
    }
}

/// Keeps every message in memory, for tests.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    sent: Arc<Mutex<Vec<Email>>>,
    notify: Arc<tokio::sync::Notify>,
}

impl Outbox {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every message so far.
    #[must_use]
    pub fn sent(&self) -> Vec<Email> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits (up to `timeout`) for a message to `to` whose subject contains `subject`, and
    /// returns it. Mail is sent in the background, so tests wait on this, not on a sleep.
    pub async fn wait_for(
        &self,
        to: &str,
        subject: &str,
        timeout: std::time::Duration,
    ) -> Option<Email> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            if let Some(found) = self
                .sent()
                .into_iter()
                .rev()
                .find(|m| m.to == to && m.subject.contains(subject))
            {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

impl Mailer for Outbox {
    fn send<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async move {
            if let Ok(mut sent) = self.sent.lock() {
                sent.push(email.clone());
            }
            self.notify.notify_waiters();
            Ok(())
        })
    }
}

/// The token in a mailed link (`…?token=<token>`), for tests and tools.
#[must_use]
pub fn token_in(body: &str) -> Option<&str> {
    let start = body.find("token=")? + "token=".len();
    let rest = &body[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

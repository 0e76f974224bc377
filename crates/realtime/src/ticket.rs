//! Single-use websocket tickets: how a browser, which cannot set `Authorization` on a
//! websocket handshake, authenticates without putting a long-lived token in a URL.
//!
//! A ticket is 256 random bits, valid for a few seconds, bound to one user, session and
//! tenant. The cache stores only its SHA-256 digest; redeeming it takes the entry in one atomic
//! step (`GETDEL`), so of two concurrent handshakes with one ticket exactly one succeeds.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sovereign_cache::{Cache, CacheError};
use uuid::Uuid;

/// What a ticket stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClaims {
    pub tenant: Uuid,
    pub user: Uuid,
    pub session: Uuid,
    /// The expiry of the access token the ticket was issued with: the connection lasts no
    /// longer unless it refreshes.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Issues and redeems tickets.
#[derive(Debug, Clone)]
pub struct Tickets {
    cache: Cache,
    ttl: Duration,
}

/// Every ticket starts with this, so one is recognisable in a leak report.
const PREFIX: &str = "sovwst_";

impl Tickets {
    #[must_use]
    pub fn new(cache: &Cache, ttl: Duration) -> Self {
        Self {
            cache: cache.scoped("rt").scoped("ticket"),
            ttl,
        }
    }

    /// How long a ticket stays valid.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new ticket for `claims`.
    pub async fn issue(&self, claims: &TicketClaims) -> Result<String, CacheError> {
        let ticket = format!(
            "{PREFIX}{}",
            URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        );
        self.cache
            .set(&digest(&ticket), claims, Some(self.ttl))
            .await?;
        Ok(ticket)
    }

    /// The claims of a valid, unused ticket, which is spent by this call; `None` for an
    /// unknown, expired or already used one.
    pub async fn redeem(&self, ticket: &str) -> Result<Option<TicketClaims>, CacheError> {
        if !ticket.starts_with(PREFIX) || ticket.len() > 100 {
            return Ok(None);
        }
        self.cache.take(&digest(ticket)).await
    }
}

fn digest(ticket: &str) -> String {
    Sha256::digest(ticket.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ticket_is_redeemed_once_and_not_stored_in_the_clear() {
        let cache = Cache::in_memory("tickets");
        let tickets = Tickets::new(&cache, Duration::from_secs(30));
        let claims = TicketClaims {
            tenant: Uuid::now_v7(),
            user: Uuid::now_v7(),
            session: Uuid::now_v7(),
            expires_at: None,
        };
        let ticket = tickets.issue(&claims).await.unwrap();
        assert!(ticket.starts_with(PREFIX) && ticket.len() == PREFIX.len() + 43);
        assert!(
            !cache
                .scoped("rt")
                .scoped("ticket")
                .exists(&ticket)
                .await
                .unwrap()
        );
        assert_eq!(tickets.redeem(&ticket).await.unwrap(), Some(claims));
        assert_eq!(tickets.redeem(&ticket).await.unwrap(), None);
        assert_eq!(tickets.redeem("sovwst_forged").await.unwrap(), None);
        assert_eq!(tickets.redeem("anything").await.unwrap(), None);
    }
}

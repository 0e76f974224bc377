//! Revocations: a revoked session or API key closes its connections at once; a change to an
//! account or tenant has the transport check each concerned credential again, and the
//! transport's answer closes the connection when the credential no longer holds.

use sovereign_auth::revocation::Revocation;

use super::{Close, Connection, CredentialRef, Hub, Identity, lock};

impl Hub {
    pub(super) fn on_revocation(&self, revocation: Revocation) {
        match revocation {
            Revocation::Session(id) => self.close_where(
                |i| i.credential == CredentialRef::Session(id),
                Close::REVOKED,
            ),
            Revocation::ApiKey(id) => self.close_where(
                |i| i.credential == CredentialRef::ApiKey(id),
                Close::REVOKED,
            ),
            // Anything about the account changed: the transport asks the database what.
            Revocation::User(id) => self.recheck_where(|i| i.user == id),
            Revocation::Tenant(id) => self.recheck_where(|i| i.tenant == id),
        }
    }

    /// Has every connection's credential checked again: periodically, and whenever
    /// revocations may have been missed.
    pub(super) fn recheck_all(&self) {
        self.recheck_where(|_| true);
    }

    fn close_where(&self, matches: impl Fn(&Identity) -> bool, reason: Close) {
        self.each_connection(|conn| {
            if matches(&lock(&conn.identity)) {
                conn.signal_close(reason);
            }
        });
    }

    fn recheck_where(&self, matches: impl Fn(&Identity) -> bool) {
        self.each_connection(|conn| {
            if matches(&lock(&conn.identity)) {
                conn.signal_recheck();
            }
        });
    }
}

impl Connection {
    /// The transport's answer to [`Event::Recheck`](super::Event::Recheck): the identity the
    /// credential has now, or `None` when it is no longer valid.
    pub fn rechecked(&self, now: Option<Identity>) {
        let current = self.shared.identity();
        match now {
            None => {
                self.shared.signal_close(Close::REVOKED);
            }
            Some(now) if now.role != current.role || now.can_write != current.can_write => {
                self.shared.signal_close(Close::ROLE_CHANGED);
            }
            Some(_) => {}
        }
    }
}

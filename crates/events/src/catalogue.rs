//! Every event type, named and described in one place. `docs/events.md` is generated from this
//! list (and checked against it by a test).

use std::fmt;

macro_rules! catalogue {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, audited: $audited:literal, $description:literal; )*) => {
        /// The type of an event: what happened, as `<area>.<what>`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $( $(#[$doc])* $variant, )*
        }

        impl EventType {
            /// Every type, in the order of the documentation.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            /// The name events carry, e.g. `account.signed_in`.
            #[must_use]
            pub fn name(self) -> &'static str {
                match self { $( EventType::$variant => $name, )* }
            }

            /// Whether events of this type are also entries of the audit log.
            #[must_use]
            pub fn audited(self) -> bool {
                match self { $( EventType::$variant => $audited, )* }
            }

            /// One sentence for the documentation.
            #[must_use]
            pub fn description(self) -> &'static str {
                match self { $( EventType::$variant => $description, )* }
            }

            /// The type named `name`, if there is one.
            #[must_use]
            pub fn parse(name: &str) -> Option<Self> {
                match name { $( $name => Some(EventType::$variant), )* _ => None }
            }
        }
    };
}

catalogue! {
    AccountRegistered = "account.registered", audited: true,
        "An account was created by signing up (or by a provider's first sign-in).";
    AccountSignedIn = "account.signed_in", audited: true,
        "A session was opened: a password, a provider, a passkey or a completed second-factor challenge.";
    AccountSignInFailed = "account.sign_in_failed", audited: true,
        "A sign-in was refused: wrong password or unknown address, a disabled account, a wrong second factor.";
    AccountRefreshReused = "account.refresh_reused", audited: true,
        "A spent refresh token was presented again after its reuse interval; the session was revoked.";
    AccountSignedOut = "account.signed_out", audited: true,
        "A session was ended by its user (`data.all`: every session of the account).";
    SessionRevoked = "account.session_revoked", audited: true,
        "A session was revoked by its user or an administrator.";
    PasswordChanged = "account.password_changed", audited: true,
        "The password was changed by its user, or reset through a reset link (`data.reset`).";
    FactorAdded = "account.factor_added", audited: true,
        "A second factor was confirmed (`data.kind`: `totp`, `passkey`).";
    FactorRemoved = "account.factor_removed", audited: true,
        "A second factor was removed (`data.kind`).";
    IdentityLinked = "account.identity_linked", audited: true,
        "A provider identity was linked to the account (`data.provider`).";
    IdentityUnlinked = "account.identity_unlinked", audited: true,
        "A provider identity was unlinked (`data.provider`).";
    RoleChanged = "account.role_changed", audited: true,
        "An administrator changed the account's role (`data.from`, `data.to`).";
    AccountActivated = "account.activated", audited: true,
        "An administrator reactivated the account.";
    AccountDeactivated = "account.deactivated", audited: true,
        "An administrator deactivated the account; its sessions and keys stopped working.";
    AccountDeleted = "account.deleted", audited: true,
        "The account was deleted.";
    ApiKeyCreated = "api_key.created", audited: true,
        "An API key was created (`data.name`, `data.scopes`; never the key).";
    ApiKeyRevoked = "api_key.revoked", audited: true,
        "An API key was revoked.";
    TenantCreated = "tenant.created", audited: true,
        "A superadmin created a tenant (recorded in the superadmin's tenant).";
    TenantUpdated = "tenant.updated", audited: true,
        "A superadmin renamed a tenant.";
    TenantSuspended = "tenant.suspended", audited: true,
        "A superadmin suspended a tenant.";
    TenantActivated = "tenant.activated", audited: true,
        "A superadmin reactivated a tenant.";
    TenantDeleted = "tenant.deleted", audited: true,
        "A superadmin deleted a tenant and everything in it.";
    CollectionCreated = "vector.collection_created", audited: true,
        "A vector collection was created (`data.dimension`, `data.distance`).";
    CollectionDeleted = "vector.collection_deleted", audited: true,
        "A vector collection was deleted with its points.";
    ObjectCreated = "storage.object_created", audited: true,
        "An object was written: uploaded, copied, or completed from a direct upload (`data.bucket`, `data.key`, `data.size`).";
    ObjectUpdated = "storage.object_updated", audited: true,
        "An object's metadata or content type was changed, or it was moved here (`data.from`).";
    ObjectDeleted = "storage.object_deleted", audited: true,
        "An object was deleted (one event per object, also for a prefix).";
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_well_formed_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for &t in EventType::ALL {
            assert!(seen.insert(t.name()), "{} twice", t.name());
            assert_eq!(EventType::parse(t.name()), Some(t));
            let (area, what) = t.name().split_once('.').unwrap();
            assert!(!area.is_empty() && !what.is_empty());
            assert!(
                t.name()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.'),
                "{}",
                t.name()
            );
        }
        assert_eq!(EventType::parse("account.nope"), None);
    }
}

/// The catalogue as the Markdown table `docs/events.md` carries between its markers.
#[must_use]
pub fn catalogue_markdown() -> String {
    let mut out = String::from("| Type | Audited | When |\n|---|---|---|\n");
    for &t in EventType::ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            t.name(),
            if t.audited() { "yes" } else { "no" },
            t.description()
        ));
    }
    out
}

#[cfg(test)]
mod docs {
    const START: &str =
        "<!-- event catalogue: generated from crates/events/src/catalogue.rs; do not edit -->\n";
    const END: &str = "<!-- end of the event catalogue -->";

    /// `docs/events.md` lists exactly the catalogue; `UPDATE_DOCS=1` rewrites it.
    #[test]
    fn docs_list_every_event_type() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.md");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let (Some(start), Some(end)) = (text.find(START), text.find(END)) else {
            panic!("docs/events.md lacks the catalogue markers");
        };
        let table = super::catalogue_markdown();
        let current = &text[start + START.len()..end];
        if current != table {
            if std::env::var_os("UPDATE_DOCS").is_some() {
                let updated = format!("{}{START}{table}{}", &text[..start], &text[end..]);
                std::fs::write(path, updated).unwrap_or_else(|e| panic!("{e}"));
            } else {
                panic!(
                    "docs/events.md is out of date; run `UPDATE_DOCS=1 cargo test -p sovereign-events docs`"
                );
            }
        }
    }
}

//! Channel names and the one place that decides who may subscribe and publish.
//!
//! A client names a channel as `<kind>:<name>`; the hub keys it by the connection's tenant as
//! well, so no name a client can send reaches another tenant's channel.

use std::fmt;
use std::sync::Arc;

use sovereign_auth::Role;
use uuid::Uuid;

use crate::Identity;
use crate::error::RealtimeError;

/// Longest channel name, kind included.
pub const MAX_CHANNEL_LEN: usize = 128;

/// The kinds of channel, each with its own rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `public:<name>`: every user of the tenant subscribes and publishes.
    Public,
    /// `user:<uuid>`: only that user subscribes; only the server publishes (notifications).
    User(Uuid),
    /// `admin:<name>`: tenant administrators subscribe and publish.
    Admin,
    /// `storage:<bucket>`: the bucket's object events (created, deleted); administrators
    /// subscribe, only the server publishes.
    Storage,
}

/// A parsed, valid channel name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Channel {
    kind: Kind,
    name: Arc<str>,
}

impl Channel {
    /// Parses `public:<name>`, `admin:<name>`, `storage:<bucket>` (name: 1+ of
    /// `A-Z a-z 0-9 _ - .`) or `user:<uuid>`; at most [`MAX_CHANNEL_LEN`] characters.
    pub fn parse(text: &str) -> Result<Self, RealtimeError> {
        let invalid =
            || RealtimeError::InvalidChannel(text.chars().take(MAX_CHANNEL_LEN).collect());
        if text.len() > MAX_CHANNEL_LEN {
            return Err(invalid());
        }
        let (kind, rest) = text.split_once(':').ok_or_else(invalid)?;
        let kind = match kind {
            "public" | "admin" | "storage" => {
                let valid = !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
                if !valid {
                    return Err(invalid());
                }
                match kind {
                    "public" => Kind::Public,
                    "admin" => Kind::Admin,
                    _ => Kind::Storage,
                }
            }
            "user" => {
                let id = Uuid::try_parse(rest).map_err(|_| invalid())?;
                // One spelling per channel: the canonical lower-case form.
                if id.hyphenated().to_string() != rest {
                    return Err(invalid());
                }
                Kind::User(id)
            }
            _ => return Err(invalid()),
        };
        Ok(Self {
            kind,
            name: Arc::from(text),
        })
    }

    /// The user channel of `user`.
    #[must_use]
    pub fn user(user: Uuid) -> Self {
        Self {
            kind: Kind::User(user),
            name: Arc::from(format!("user:{user}")),
        }
    }

    #[must_use]
    pub fn kind(&self) -> Kind {
        self.kind
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub(crate) fn shared_name(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// What a connection wants to do on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Subscribe,
    Publish,
}

/// The rules, in one place. `Forbidden` says which rule refused.
pub fn authorize(
    identity: &Identity,
    channel: &Channel,
    action: Action,
) -> Result<(), RealtimeError> {
    if action == Action::Publish && !identity.can_write {
        return Err(RealtimeError::Forbidden(
            "this API key lacks the write scope",
        ));
    }
    match (channel.kind, action) {
        (Kind::Public, _) => Ok(()),
        (Kind::User(owner), Action::Subscribe) if owner == identity.user => Ok(()),
        (Kind::User(_), Action::Subscribe) => Err(RealtimeError::Forbidden(
            "a user channel is only its user's",
        )),
        (Kind::User(_), Action::Publish) => Err(RealtimeError::Forbidden(
            "user channels are published to by the server only",
        )),
        (Kind::Admin, _) if identity.role >= Role::Admin => Ok(()),
        (Kind::Admin, _) => Err(RealtimeError::Forbidden(
            "admin channels are for administrators",
        )),
        (Kind::Storage, Action::Subscribe) if identity.role >= Role::Admin => Ok(()),
        (Kind::Storage, Action::Subscribe) => Err(RealtimeError::Forbidden(
            "storage channels are for administrators",
        )),
        (Kind::Storage, Action::Publish) => Err(RealtimeError::Forbidden(
            "storage channels are published to by the server only",
        )),
    }
}

/// Server-side publishing (`POST /api/v1/realtime/publish`): administrators, and API keys
/// with the write scope and the admin role, to any channel of their tenant.
pub fn authorize_server_publish(identity: &Identity) -> Result<(), RealtimeError> {
    if !identity.can_write {
        return Err(RealtimeError::Forbidden(
            "this API key lacks the write scope",
        ));
    }
    if identity.role < Role::Admin {
        return Err(RealtimeError::Forbidden(
            "server-side publishing is for administrators",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CredentialRef;

    fn identity(role: Role, can_write: bool) -> Identity {
        Identity {
            tenant: Uuid::nil(),
            user: Uuid::from_u128(7),
            role,
            credential: CredentialRef::Session(Uuid::from_u128(1)),
            can_write,
            expires_at: None,
        }
    }

    #[test]
    fn names_parse_by_kind_and_refuse_everything_else() {
        assert_eq!(Channel::parse("public:news").unwrap().kind(), Kind::Public);
        assert_eq!(
            Channel::parse("admin:ops.alerts-1").unwrap().kind(),
            Kind::Admin
        );
        assert_eq!(
            Channel::parse("storage:avatars").unwrap().kind(),
            Kind::Storage
        );
        let id = Uuid::from_u128(7);
        assert_eq!(
            Channel::parse(&format!("user:{id}")).unwrap().kind(),
            Kind::User(id)
        );
        for bad in [
            "",
            "news",
            "public:",
            "public:a b",
            "public:a:b",
            "private:x",
            "user:not-a-uuid",
            "user:00000000-0000-0000-0000-00000000000A",
            "public:é",
            "storage:",
            &format!("public:{}", "x".repeat(130)),
        ] {
            assert!(Channel::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_rules_per_kind() {
        let user = identity(Role::User, true);
        let admin = identity(Role::Admin, true);
        let read_only_key = identity(Role::Admin, false);
        let public = Channel::parse("public:news").unwrap();
        let own = Channel::user(user.user);
        let other = Channel::user(Uuid::from_u128(8));
        let ops = Channel::parse("admin:ops").unwrap();

        assert!(authorize(&user, &public, Action::Subscribe).is_ok());
        assert!(authorize(&user, &public, Action::Publish).is_ok());
        assert!(authorize(&user, &own, Action::Subscribe).is_ok());
        assert!(authorize(&user, &own, Action::Publish).is_err());
        assert!(authorize(&user, &other, Action::Subscribe).is_err());
        assert!(authorize(&admin, &other, Action::Subscribe).is_err());
        assert!(authorize(&user, &ops, Action::Subscribe).is_err());
        assert!(authorize(&admin, &ops, Action::Subscribe).is_ok());
        assert!(authorize(&admin, &ops, Action::Publish).is_ok());
        assert!(authorize(&read_only_key, &public, Action::Subscribe).is_ok());
        assert!(authorize(&read_only_key, &public, Action::Publish).is_err());
        let files = Channel::parse("storage:files").unwrap();
        assert!(authorize(&admin, &files, Action::Subscribe).is_ok());
        assert!(authorize(&user, &files, Action::Subscribe).is_err());
        assert!(authorize(&admin, &files, Action::Publish).is_err());

        assert!(authorize_server_publish(&admin).is_ok());
        assert!(authorize_server_publish(&user).is_err());
        assert!(authorize_server_publish(&read_only_key).is_err());
    }
}

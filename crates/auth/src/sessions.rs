//! Sessions: opening one at sign-in, rotating its single-use refresh tokens, listing the
//! account's live sessions and ending them (and the one query that revokes sessions, used by
//! every flow that signs an account out).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;
use sovereign_db::schema::{refresh_tokens, sessions, users};
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use sovereign_events::{Actor, EventType, NewEvent};
use uuid::Uuid;

use crate::accounts::{auth_event, later};
use crate::audit;
use crate::factors::tenant_policy;
use crate::model::{Aal, Assurance, Credential, Principal, User, UserRow};
use crate::opaque::{self, Kind};
use crate::revocation::Revocation;
use crate::{Accounts, AuthError};

/// Longest user agent kept with a session.
const MAX_USER_AGENT_CHARS: usize = 512;

/// Where a request came from, kept with the sessions it opens.
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl ClientContext {
    /// The user agent as stored: at most [`MAX_USER_AGENT_CHARS`] characters.
    pub(crate) fn user_agent(&self) -> Option<String> {
        self.user_agent
            .as_deref()
            .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect())
    }
}

/// Tokens from a sign-in or a refresh.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9…",
    "token_type": "Bearer",
    "expires_in": 900,
    "refresh_token": "sovrt_000000000000000000000000000000016f9c…",
    "refresh_expires_in": 604800,
    "session_id": "0193a6f0-7c3e-7b1a-9d2f-4a5b6c7d8e9f"
})))]
pub struct TokenPair {
    /// A JWT (`typ: at+jwt`); send it as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque and single use: exchange it at `/api/v1/auth/refresh` for a new pair.
    pub refresh_token: String,
    /// Seconds until the session ends.
    pub refresh_expires_in: u64,
    pub session_id: Uuid,
}

/// What rotating a refresh token found.
enum Rotation {
    /// The successor pair: just made, or (`repeated`) made by an exchange of the same token
    /// inside the reuse interval.
    Rotated {
        user: User,
        session: Uuid,
        refresh: String,
        expires_at: DateTime<Utc>,
        /// When the token was spent: the successor access token's `iat`.
        spent_at: DateTime<Utc>,
        repeated: bool,
        /// How the session was authenticated, for the new access token.
        assurance: Assurance,
    },
    /// A spent token: the session is now revoked.
    Reused { session: Uuid, user: Uuid },
    /// An `aal1` session of an account the tenant now requires `aal2` of: revoked.
    PolicyRefused { session: Uuid, user: Uuid },
    /// Unknown, or its session ended.
    Invalid,
}

impl Accounts {
    /// Opens a session for `user`, signed in from `client`, with its first refresh token.
    pub(crate) async fn open_session(
        &self,
        user: &User,
        client: &ClientContext,
        assurance: &Assurance,
    ) -> Result<TokenPair, AuthError> {
        let refresh_ttl = self.inner.settings.refresh_token_ttl;
        let session = Uuid::now_v7();
        let (tenant, user_id) = (user.tenant_id, user.id);
        let refresh = opaque::mint(Kind::Refresh, tenant);
        let digest = refresh.digest;
        let user_agent = client.user_agent().unwrap_or_default();
        let ip = client.ip.map(|ip| ip.to_string());
        let aal = assurance.aal.as_str();
        let amr: Vec<Option<String>> = assurance.amr.iter().cloned().map(Some).collect();
        let methods = assurance.amr.clone();
        let auth_time = DateTime::from_timestamp(assurance.auth_time, 0).unwrap_or_else(Utc::now);
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::insert_into(sessions::table)
                        .values((
                            sessions::id.eq(session),
                            sessions::tenant_id.eq(tenant),
                            sessions::user_id.eq(user_id),
                            sessions::user_agent.eq(user_agent),
                            sessions::ip.eq(ip),
                            sessions::expires_at.eq(later(refresh_ttl)),
                            sessions::aal.eq(aal),
                            sessions::amr.eq(amr),
                            sessions::auth_time.eq(auth_time),
                        ))
                        .execute(conn)
                        .await?;
                    insert_refresh_token(conn, tenant, session, digest).await?;
                    audit::record(
                        conn,
                        tenant,
                        EventType::AccountSignedIn,
                        Actor::User { id: user_id },
                        audit::user(user_id),
                        json!({ "session_id": session, "aal": aal, "amr": methods }),
                    )
                    .await
                }
                .scope_boxed()
            })
            .await?;
        self.token_pair(
            user,
            session,
            refresh.token,
            refresh_ttl.as_secs(),
            assurance,
        )
    }

    /// The pair handed out for `session`: a new access token for `user`, and `refresh`.
    fn token_pair(
        &self,
        user: &User,
        session: Uuid,
        refresh: String,
        refresh_expires_in: u64,
        assurance: &Assurance,
    ) -> Result<TokenPair, AuthError> {
        let access = self.inner.keys.issue_at(
            user,
            session,
            Utc::now().timestamp(),
            Uuid::now_v7(),
            assurance,
        )?;
        Ok(TokenPair {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: access.expires_in.as_secs(),
            refresh_token: refresh,
            refresh_expires_in,
            session_id: session,
        })
    }

    /// Exchanges a refresh token for a new pair. The token is spent atomically: of two
    /// concurrent refreshes one wins. Presented again within `REFRESH_TOKEN_REUSE_SECONDS` of
    /// being spent, it answers with the same successor pair — never a second branch: the
    /// successor refresh token and the access token's id are keyed functions of the spent token,
    /// and the access token's `iat` is when it was spent. Any later replay is reuse and revokes
    /// the session.
    pub async fn refresh(
        &self,
        token: &str,
        client: &ClientContext,
    ) -> Result<TokenPair, AuthError> {
        let (tenant, digest) = opaque::parse(Kind::Refresh, token)
            .ok_or(AuthError::InvalidToken("not a refresh token"))?;
        let owner: Option<Uuid> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    refresh_tokens::table
                        .inner_join(sessions::table.on(sessions::id.eq(refresh_tokens::session_id)))
                        .filter(refresh_tokens::token_hash.eq(digest.to_vec()))
                        .select(sessions::user_id)
                        .first(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        let owner = owner.ok_or(AuthError::InvalidToken("unknown refresh token"))?;
        self.throttle("refresh", &owner.to_string()).await?;

        let key = self.inner.settings.secret_key_bytes();
        let next = opaque::successor(Kind::Refresh, tenant, key, token);
        let jti = Uuid::from_bytes(uuid_bytes(opaque::keyed(
            key,
            b"sovereign access token id v1",
            token,
        )));
        let next_token = next.token.clone();
        let reuse = chrono::Duration::from_std(self.inner.settings.refresh_reuse_interval)
            .unwrap_or_else(|_| chrono::Duration::zero());
        let user_agent = client.user_agent();
        let ip = client.ip.map(|ip| ip.to_string());
        let rotation = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let spent: Option<(Uuid, Option<DateTime<Utc>>)> =
                        diesel::update(refresh_tokens::table)
                            .filter(refresh_tokens::token_hash.eq(digest.to_vec()))
                            .filter(refresh_tokens::spent_at.is_null())
                            .set(refresh_tokens::spent_at.eq(diesel::dsl::now))
                            .returning((refresh_tokens::session_id, refresh_tokens::spent_at))
                            .get_result(conn)
                            .await
                            .optional()?;
                    let Some((session, Some(spent_at))) = spent else {
                        // Spent before: the loser of a concurrent refresh, or a replay. Inside
                        // the reuse interval, the successor the first exchange made.
                        if let Some(repeat) =
                            repeated_exchange(conn, digest, (next.digest, &next_token), reuse)
                                .await?
                        {
                            return Ok(repeat);
                        }
                        let revoked = revoke_sessions(
                            conn,
                            RevokeWhere::TokenSession(digest.to_vec()),
                            "refresh_token_reused",
                        )
                        .await?;
                        return Ok::<_, AuthError>(match <[_]>::first(&revoked) {
                            Some(&(session, user)) => {
                                sovereign_events::emit(
                                    conn,
                                    tenant,
                                    NewEvent::new(
                                        EventType::AccountRefreshReused,
                                        Actor::User { id: user },
                                    )
                                    .subject(audit::user(user))
                                    .data(json!({ "session_id": session }))
                                    .failed(),
                                )
                                .await?;
                                Rotation::Reused { session, user }
                            }
                            None => Rotation::Invalid,
                        });
                    };
                    let live = live_session(session)
                        .select((
                            UserRow::as_select(),
                            sessions::expires_at,
                            ASSURANCE_COLUMNS,
                        ))
                        .first::<(UserRow, DateTime<Utc>, AssuranceRow)>(conn)
                        .await
                        .optional()?;
                    let Some((row, expires_at, assurance)) = live else {
                        return Ok(Rotation::Invalid);
                    };
                    let user = User::try_from(row)?;
                    if assurance.0 == Aal::Aal1.as_str()
                        && tenant_policy(conn).await?.covers(user.role)
                    {
                        revoke_sessions(conn, RevokeWhere::Session(session), "mfa_policy").await?;
                        return Ok(Rotation::PolicyRefused {
                            session,
                            user: user.id,
                        });
                    }
                    insert_refresh_token(conn, tenant, session, next.digest).await?;
                    diesel::update(sessions::table.find(session))
                        .set((
                            sessions::last_used_at.eq(diesel::dsl::now),
                            sessions::ip.eq(ip),
                        ))
                        .execute(conn)
                        .await?;
                    if let Some(ua) = user_agent {
                        diesel::update(sessions::table.find(session))
                            .set(sessions::user_agent.eq(ua))
                            .execute(conn)
                            .await?;
                    }
                    Ok(Rotation::Rotated {
                        user,
                        session,
                        refresh: next_token,
                        expires_at,
                        spent_at,
                        repeated: false,
                        assurance: assurance_of(assurance),
                    })
                }
                .scope_boxed()
            })
            .await?;
        match rotation {
            Rotation::Rotated {
                user,
                session,
                refresh,
                expires_at,
                spent_at,
                repeated,
                assurance,
            } => {
                let remaining = (expires_at - Utc::now()).num_seconds().max(0);
                let access = self.inner.keys.issue_at(
                    &user,
                    session,
                    spent_at.timestamp(),
                    jti,
                    &assurance,
                )?;
                auth_event(if repeated {
                    "refresh_repeated"
                } else {
                    "refresh"
                });
                Ok(TokenPair {
                    access_token: access.token,
                    token_type: "Bearer",
                    expires_in: access.expires_in.as_secs(),
                    refresh_token: refresh,
                    refresh_expires_in: u64::try_from(remaining).unwrap_or(0),
                    session_id: session,
                })
            }
            Rotation::Reused { session, user } => {
                auth_event("refresh_token_reused");
                tracing::warn!(
                    security_event = "refresh_token_reused",
                    session_id = %session,
                    user_id = %user,
                    "a spent refresh token was presented; session revoked"
                );
                self.announce(Revocation::Session(session)).await;
                Err(AuthError::RefreshReused)
            }
            Rotation::PolicyRefused { session, user } => {
                tracing::warn!(security_event = "mfa_policy_refused", session_id = %session, user_id = %user, "an aal1 session the tenant's policy no longer allows; session ended");
                self.announce(Revocation::Session(session)).await;
                Err(AuthError::Aal2Required)
            }
            Rotation::Invalid => Err(AuthError::InvalidToken("session ended")),
        }
    }

    /// Ends this session, or every session of the account.
    pub async fn logout(&self, principal: &Principal, all: bool) -> Result<(), AuthError> {
        let session = principal.session_id()?;
        let user = principal.user.id;
        let target = if all {
            RevokeWhere::User(user)
        } else {
            RevokeWhere::Session(session)
        };
        let by = audit::actor(principal);
        let event = (
            EventType::AccountSignedOut,
            by,
            audit::user(user),
            json!({ "session_id": session, "all": all }),
        );
        self.revoke(principal.user.tenant_id, target, "logout", Some(event))
            .await?;
        tracing::info!(security_event = "logout", user_id = %user, all, "signed out");
        self.announce(if all {
            Revocation::User(user)
        } else {
            Revocation::Session(session)
        })
        .await;
        Ok(())
    }

    /// The account's live sessions, newest first.
    pub async fn sessions(
        &self,
        principal: &Principal,
    ) -> Result<Vec<crate::SessionInfo>, AuthError> {
        let current = match principal.credential {
            Credential::Session { id } => Some(id),
            Credential::ApiKey { .. } => None,
        };
        let user = principal.user.id;
        let rows = self
            .db()
            .tenant_transaction(principal.user.tenant_id, |conn| {
                async move {
                    sessions::table
                        .filter(sessions::user_id.eq(user))
                        .filter(sessions::revoked_at.is_null())
                        .filter(sessions::expires_at.gt(diesel::dsl::now))
                        .order(sessions::created_at.desc())
                        .limit(100)
                        .select(crate::model::SessionRow::as_select())
                        .load(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| crate::SessionInfo {
                current: Some(r.id) == current,
                id: r.id,
                user_agent: r.user_agent,
                ip: r.ip,
                created_at: r.created_at,
                last_used_at: r.last_used_at,
                expires_at: r.expires_at,
            })
            .collect())
    }

    /// Ends one of the account's own sessions.
    pub async fn revoke_session(
        &self,
        principal: &Principal,
        session: Uuid,
    ) -> Result<(), AuthError> {
        let user = principal.user.id;
        let event = (
            EventType::SessionRevoked,
            audit::actor(principal),
            audit::user(user),
            json!({ "session_id": session }),
        );
        let revoked = self
            .revoke(
                principal.user.tenant_id,
                RevokeWhere::OwnSession { session, user },
                "revoked_by_user",
                Some(event),
            )
            .await?;
        if revoked.is_empty() {
            return Err(AuthError::NotFound("session"));
        }
        self.announce(Revocation::Session(session)).await;
        Ok(())
    }

    /// Revokes sessions in a transaction of their own, with `event` when any was revoked;
    /// returns `(session, user)` of each one revoked.
    async fn revoke(
        &self,
        tenant: Uuid,
        target: RevokeWhere,
        reason: &'static str,
        event: Option<(EventType, Actor, String, serde_json::Value)>,
    ) -> Result<Vec<(Uuid, Uuid)>, AuthError> {
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let revoked = revoke_sessions(conn, target, reason).await?;
                    if let Some((kind, actor, subject, data)) = event
                        && !revoked.is_empty()
                    {
                        audit::record(conn, tenant, kind, actor, subject, data).await?;
                    }
                    Ok(revoked)
                }
                .scope_boxed()
            })
            .await
    }
}

/// The session `session` while it is live, joined to its account: unrevoked, unexpired, and
/// the account active and not deleted.
/// A session's assurance columns: `aal`, `amr`, `auth_time`.
pub(crate) const ASSURANCE_COLUMNS: (sessions::aal, sessions::amr, sessions::auth_time) =
    (sessions::aal, sessions::amr, sessions::auth_time);
/// (PostgreSQL array elements are nullable to diesel; none of these is ever NULL.)
pub(crate) type AssuranceRow = (String, Vec<Option<String>>, DateTime<Utc>);

pub(crate) fn assurance_of((aal, amr, auth_time): AssuranceRow) -> Assurance {
    Assurance {
        aal: Aal::parse(&aal),
        amr: amr.into_iter().flatten().collect(),
        auth_time: auth_time.timestamp(),
    }
}

#[diesel::dsl::auto_type(no_type_alias)]
pub(crate) fn live_session(session: Uuid) -> _ {
    sessions::table
        .inner_join(users::table.on(users::id.eq(sessions::user_id)))
        .filter(sessions::id.eq(session))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(diesel::dsl::now))
        .filter(users::deleted_at.is_null())
        .filter(users::is_active.eq(true))
}

/// Stores the digest of a refresh token for `session`.
async fn insert_refresh_token(
    conn: &mut sovereign_db::AsyncPgConnection,
    tenant: Uuid,
    session: Uuid,
    digest: [u8; 32],
) -> Result<(), AuthError> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(digest.to_vec()),
            refresh_tokens::tenant_id.eq(tenant),
            refresh_tokens::session_id.eq(session),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Which sessions to revoke.
pub(crate) enum RevokeWhere {
    Session(Uuid),
    OwnSession {
        session: Uuid,
        user: Uuid,
    },
    User(Uuid),
    OtherSessions {
        user: Uuid,
        keep: Uuid,
    },
    /// The session a refresh token belongs to.
    TokenSession(Vec<u8>),
}

/// Revokes live sessions; returns `(session, user)` of each one revoked.
pub(crate) async fn revoke_sessions(
    conn: &mut sovereign_db::AsyncPgConnection,
    target: RevokeWhere,
    reason: &'static str,
) -> Result<Vec<(Uuid, Uuid)>, AuthError> {
    let base = diesel::update(sessions::table)
        .filter(sessions::revoked_at.is_null())
        .into_boxed();
    let filtered = match target {
        RevokeWhere::Session(id) => base.filter(sessions::id.eq(id)),
        RevokeWhere::OwnSession { session, user } => base
            .filter(sessions::id.eq(session))
            .filter(sessions::user_id.eq(user)),
        RevokeWhere::User(user) => base.filter(sessions::user_id.eq(user)),
        RevokeWhere::OtherSessions { user, keep } => base
            .filter(sessions::user_id.eq(user))
            .filter(sessions::id.ne(keep)),
        RevokeWhere::TokenSession(digest) => base.filter(
            sessions::id.eq_any(
                refresh_tokens::table
                    .filter(refresh_tokens::token_hash.eq(digest))
                    .select(refresh_tokens::session_id),
            ),
        ),
    };
    Ok(filtered
        .set((
            sessions::revoked_at.eq(diesel::dsl::now),
            sessions::revoked_reason.eq(reason),
        ))
        .returning((sessions::id, sessions::user_id))
        .get_results(conn)
        .await?)
}

/// A refresh token spent less than `reuse` ago, presented again: the successor its first
/// exchange made (`successor` is that token's digest), while the session lives and the
/// successor is on record. `None`: this is reuse.
async fn repeated_exchange(
    conn: &mut sovereign_db::AsyncPgConnection,
    digest: [u8; 32],
    (successor, successor_token): ([u8; 32], &str),
    reuse: chrono::Duration,
) -> Result<Option<Rotation>, AuthError> {
    if reuse <= chrono::Duration::zero() {
        return Ok(None);
    }
    let earlier: Option<(Uuid, Option<DateTime<Utc>>)> = refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(digest.to_vec()))
        .select((refresh_tokens::session_id, refresh_tokens::spent_at))
        .first(conn)
        .await
        .optional()?;
    let Some((session, Some(spent_at))) = earlier else {
        return Ok(None);
    };
    if Utc::now() - spent_at > reuse {
        return Ok(None);
    }
    let recorded: i64 = refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(successor.to_vec()))
        .filter(refresh_tokens::session_id.eq(session))
        .count()
        .get_result(conn)
        .await?;
    if recorded == 0 {
        return Ok(None);
    }
    let live = live_session(session)
        .select((
            UserRow::as_select(),
            sessions::expires_at,
            ASSURANCE_COLUMNS,
        ))
        .first::<(UserRow, DateTime<Utc>, AssuranceRow)>(conn)
        .await
        .optional()?;
    let Some((row, expires_at, assurance)) = live else {
        return Ok(None);
    };
    Ok(Some(Rotation::Rotated {
        user: User::try_from(row)?,
        session,
        refresh: successor_token.to_owned(),
        expires_at,
        spent_at,
        repeated: true,
        assurance: assurance_of(assurance),
    }))
}

/// The first 16 bytes of `hash` as a version-4-shaped UUID (an access token's `jti`).
fn uuid_bytes(hash: [u8; 32]) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    bytes
}

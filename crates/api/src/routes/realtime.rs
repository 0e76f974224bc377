//! Realtime channels: the websocket handshake at `GET /api/v1/ws`, single-use tickets for
//! browsers, and server-side publishing. The channels themselves (rules, fan-out, history,
//! presence, limits) are `sovereign-realtime`'s; this module authenticates, checks the
//! `Origin`, upgrades, and moves frames between the socket and the hub.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sovereign_auth::{Accounts, AuthError, Credential, Scope};
use sovereign_realtime::{
    Channel, Close, Connection, Event, Hub, Identity, TicketClaims, Tickets,
    authorize_server_publish,
};
use tokio::time::Instant;
use utoipa::ToSchema;
use validator::Validate;

use crate::auth::{CurrentUser, Presented, ambiguous_credentials, challenge};
use crate::error::ApiError;
use crate::extract::Json;
use crate::state::AppState;

fn hub(state: &AppState) -> Result<&Hub, ApiError> {
    state.hub.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "feature_disabled",
            "Realtime channels are not enabled on this server.",
        )
        .with_suggestion("set ENABLE_WEBSOCKETS=true")
    })
}

fn tickets(state: &AppState) -> Tickets {
    Tickets::new(&state.cache, state.settings.realtime.ticket_ttl)
}

/// What a connection's credential is, for rechecks.
#[derive(Clone)]
enum Proof {
    /// A bearer token or API key from the handshake's headers.
    Bearer(String),
    /// A ticket: the session it was bound to.
    Session(TicketClaims),
}

fn identity_of(user: &CurrentUser) -> Identity {
    Identity::of(&user.principal, user.tenant.id, user.expires_at)
}

/// A single-use websocket ticket.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"ticket": "sovwst_2kq0V7m6dQ1Xv3s0q6tX1yW5g2p8Hc4Jr9LbN0aZ5eE", "expires_in": 30}))]
pub struct TicketResponse {
    /// Connect with `GET /api/v1/ws?ticket=…` within `expires_in` seconds; it works once.
    pub ticket: String,
    pub expires_in: u64,
}

/// Issues a single-use ticket for a browser's websocket handshake (browsers cannot send
/// `Authorization` on it). Valid about 30 s, bound to this user, session and tenant. Sessions
/// only: API keys connect with their header.
#[utoipa::path(
    tag = "realtime",
    security(("bearer" = [])),
    responses(
        (status = 201, description = "A ticket", body = TicketResponse),
        (status = 401, description = "`not_authenticated`"),
        (status = 403, description = "`forbidden`: API keys connect with their header"),
        (status = 404, description = "`feature_disabled`"),
    )
)]
#[post("/api/v1/realtime/ticket")]
pub(super) async fn create_ticket(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<HttpResponse, ApiError> {
    hub(&state)?;
    let Credential::Session { id: session } = user.principal.credential else {
        return Err(AuthError::Forbidden(
            "tickets are for browser sessions; an API key connects with its header",
        )
        .into());
    };
    let tickets = tickets(&state);
    let ticket = tickets
        .issue(&TicketClaims {
            tenant: user.tenant.id,
            user: user.principal.user.id,
            session,
            expires_at: user.expires_at,
        })
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(TicketResponse {
            ticket,
            expires_in: tickets.ttl().as_secs(),
        }))
}

/// A message to publish from a backend.
#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"channel": "public:news", "payload": {"headline": "Release 1.2 is out"}}))]
pub struct PublishRequest {
    /// `public:<name>`, `admin:<name>` or `user:<uuid>`, in the caller's tenant.
    #[validate(length(min = 1, max = 128))]
    #[schema(
        pattern = "^(public:[A-Za-z0-9_.-]{1,121}|admin:[A-Za-z0-9_.-]{1,122}|user:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
    )]
    pub channel: String,
    /// Any JSON value, at most `REALTIME_MAX_MESSAGE_BYTES`.
    #[schema(value_type = Value)]
    pub payload: Box<RawValue>,
}

/// Where a published message landed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Published {
    pub channel: String,
    pub epoch: String,
    pub offset: u64,
}

/// Publishes a message to a channel of the caller's tenant, as the server (administrators, and
/// API keys with the `write` scope and the admin role). `user:<id>` channels are how the
/// server notifies one person.
#[utoipa::path(
    tag = "realtime",
    security(("bearer" = []), ("api_key" = [])),
    request_body = PublishRequest,
    responses(
        (status = 202, description = "Published", body = Published),
        (status = 403, description = "`forbidden`: administrators only"),
        (status = 413, description = "`message_too_large`"),
        (status = 422, description = "`invalid_channel`"),
    )
)]
#[post("/api/v1/realtime/publish")]
pub(super) async fn publish(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<PublishRequest>,
) -> Result<HttpResponse, ApiError> {
    let hub = hub(&state)?;
    authorize_server_publish(&identity_of(&user))?;
    let body = body.into_inner();
    let channel = Channel::parse(&body.channel)?;
    let position = hub
        .publish_as_server(user.tenant.id, &channel, &body.payload)
        .await?;
    Ok(HttpResponse::Accepted().json(Published {
        channel: body.channel,
        epoch: position.epoch,
        offset: position.offset,
    }))
}

/// Opens a realtime websocket (see docs/realtime.md for the protocol). Authenticate with
/// `Authorization: Bearer` (an access token or API key), or — from a browser — with
/// `?ticket=` from `POST /api/v1/realtime/ticket`. An `Origin` header must be one of
/// `BACKEND_CORS_ORIGINS`; without one, only a bearer credential is accepted.
#[utoipa::path(
    tag = "realtime",
    security(("bearer" = []), ("api_key" = []), ()),
    params(("ticket" = Option<String>, Query, description = "A single-use ticket (browsers)")),
    responses(
        (status = 101, description = "Switching protocols: the websocket is open"),
        (status = 401, description = "`not_authenticated`, `invalid_token` or `invalid_ticket`"),
        (status = 403, description = "`origin_not_allowed` or `origin_required`"),
        (status = 429, description = "`too_many_connections`"),
        (status = 503, description = "`shutting_down`"),
    )
)]
#[get("/api/v1/ws")]
pub(super) async fn connect(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let hub = hub(&state)?.clone();
    let bearer = Presented::read(&req)?;
    let ticket = ticket_of(&req);
    match (&bearer, &ticket) {
        (None, None) => return Err(challenge(AuthError::NotAuthenticated.into())),
        (Some(_), Some(_)) => return Err(ambiguous_credentials("a header and a ticket")),
        _ => {}
    }
    check_origin(&req, &state.settings.cors.allowed_origins, bearer.is_some())?;
    let (identity, proof) = match bearer {
        Some(presented) => {
            let credential = presented.credential().to_owned();
            let user = presented.authenticate(&state, Scope::Read).await?;
            (identity_of(&user), Proof::Bearer(credential))
        }
        None => {
            let ticket = ticket.unwrap_or_default();
            let claims = tickets(&state)
                .redeem(&ticket)
                .await?
                .ok_or_else(invalid_ticket)?;
            let authenticated = state
                .accounts
                .session_principal(claims.tenant, claims.user, claims.session)
                .await
                .map_err(|_| invalid_ticket())?;
            let identity = Identity::of(
                &authenticated.principal,
                authenticated.tenant.id,
                claims.expires_at,
            );
            (identity, Proof::Session(claims))
        }
    };
    let connection = hub.connect(identity)?;
    let (response, session, stream) = actix_ws::handle(&req, body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_a_websocket",
            "This endpoint only accepts websocket handshakes.",
        )
        .with_source(e.to_string())
    })?;
    let max_frame = state.settings.realtime.max_frame_bytes;
    let stream = stream
        .max_frame_size(max_frame)
        .aggregate_continuations()
        .max_continuation_size(max_frame);
    let transport = Transport {
        connection,
        session,
        accounts: state.accounts.clone(),
        proof,
        ping_interval: state.settings.realtime.ping_interval,
        pong_timeout: state.settings.realtime.pong_timeout,
    };
    actix_web::rt::spawn(transport.run(stream));
    Ok(response)
}

fn invalid_ticket() -> ApiError {
    challenge(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_ticket",
        "The ticket is unknown, expired or already used.",
    ))
    .with_suggestion(
        "get a new ticket from POST /api/v1/realtime/ticket and connect within its lifetime",
    )
}

fn ticket_of(req: &HttpRequest) -> Option<String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(name, _)| name == "ticket")
        .map(|(_, value)| value.into_owned())
}

/// Exact match against the configured origins (`*` allows any). No `Origin` is allowed only
/// with a bearer credential: browsers always send one, so a missing one is not a browser.
fn check_origin(req: &HttpRequest, allowed: &[String], bearer: bool) -> Result<(), ApiError> {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        if bearer {
            return Ok(());
        }
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_required",
            "A ticket handshake must come from a web page, with an Origin header.",
        ));
    };
    let origin = origin
        .to_str()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_ascii_lowercase();
    if allowed.iter().any(|a| a == "*" || *a == origin) {
        Ok(())
    } else {
        tracing::warn!(security_event = "websocket_origin_refused", origin = %origin.chars().take(200).collect::<String>(), "websocket handshake from a disallowed origin");
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "This origin may not open websockets on this server.",
        )
        .with_suggestion("add the page's origin to BACKEND_CORS_ORIGINS"))
    }
}

/// How a socket's task ends.
enum Ending {
    /// The server closes the connection, with its code.
    Server(Close),
    /// The client sent a Close frame (with its code, if any).
    Client(Option<CloseReason>),
    /// The connection is gone, or a send failed: nothing more can be said.
    Gone,
}

/// The code to answer a client's Close with: its own, unless it is one no endpoint may send
/// (RFC 6455 §7.4: 1004–1006, 1015, unassigned or out of range), which is a protocol error.
fn echoed(code: CloseCode) -> CloseCode {
    match u16::from(code) {
        1000..=1003 | 1007..=1014 | 3000..=4999 => code,
        _ => CloseCode::Protocol,
    }
}

/// One open socket: moves frames between it and the hub, pings, and enforces the credential's
/// expiry.
struct Transport {
    connection: Connection,
    session: actix_ws::Session,
    accounts: Accounts,
    proof: Proof,
    ping_interval: Duration,
    pong_timeout: Duration,
}

impl Transport {
    async fn run(mut self, mut stream: actix_ws::AggregatedMessageStream) {
        // Timers live across iterations and are reset, not re-created for every frame.
        let far = Instant::now() + Duration::from_secs(100 * 365 * 86_400);
        let ping = tokio::time::sleep(self.ping_interval);
        let pong = tokio::time::sleep_until(far);
        let mut expires_at = self.connection.identity().expires_at;
        let expiry = tokio::time::sleep_until(expiry(expires_at).unwrap_or(far));
        tokio::pin!(ping, pong, expiry);
        let mut awaiting_pong = false;
        let ending = loop {
            tokio::select! {
                event = self.connection.next_event() => match event {
                    Event::Send(frame) => {
                        if self.session.text(frame).await.is_err() {
                            break Ending::Gone;
                        }
                    }
                    Event::Close(reason) => break Ending::Server(reason),
                    Event::Recheck => {
                        // Boxed, like every rare and deep future below: inline, the database
                        // and cache futures they contain would make every idle socket's task
                        // tens of kilobytes.
                        let now = Box::pin(self.recheck()).await;
                        self.connection.rechecked(now);
                    }
                },
                message = stream.recv() => match message {
                    Some(Ok(AggregatedMessage::Text(text))) => {
                        if let Some(refresh) = Box::pin(self.connection.handle_text(&text)).await {
                            let verified = Box::pin(self.verify_refresh(&refresh.token)).await;
                            if self.connection.refreshed(refresh.id.as_ref(), verified) {
                                // Later rechecks prove the connection with the new token.
                                self.proof = Proof::Bearer(refresh.token);
                                let renewed = self.connection.identity().expires_at;
                                if renewed != expires_at {
                                    expires_at = renewed;
                                    expiry.as_mut().reset(self::expiry(expires_at).unwrap_or(far));
                                }
                            }
                        }
                    }
                    Some(Ok(AggregatedMessage::Binary(_))) => break Ending::Server(Close::UNSUPPORTED_DATA),
                    Some(Ok(AggregatedMessage::Ping(bytes))) => {
                        if self.session.pong(&bytes).await.is_err() {
                            break Ending::Gone;
                        }
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => awaiting_pong = false,
                    Some(Ok(AggregatedMessage::Close(reason))) => break Ending::Client(reason),
                    None => break Ending::Gone,
                    Some(Err(ProtocolError::Overflow)) => break Ending::Server(Close::MESSAGE_TOO_BIG),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket protocol error");
                        break Ending::Server(Close::PROTOCOL_VIOLATION);
                    }
                },
                () = &mut ping => {
                    ping.as_mut().reset(Instant::now() + self.ping_interval);
                    if !awaiting_pong {
                        awaiting_pong = true;
                        pong.as_mut().reset(Instant::now() + self.pong_timeout);
                    }
                    if self.session.ping(b"").await.is_err() {
                        break Ending::Gone;
                    }
                }
                () = &mut pong, if awaiting_pong => break Ending::Server(Close::HEARTBEAT_TIMEOUT),
                () = &mut expiry => break Ending::Server(Close::TOKEN_EXPIRED),
            }
        };
        let frame = match ending {
            Ending::Server(reason) => {
                metrics::counter!("sovereign_ws_closed_total", "code" => reason.code.to_string())
                    .increment(1);
                Some(CloseReason {
                    code: CloseCode::from(reason.code),
                    description: Some(reason.reason.to_owned()),
                })
            }
            // The closing handshake (RFC 6455 §5.5.1): answer with a Close carrying the client's
            // code, after which the connection ends.
            Ending::Client(reason) => reason.map(|r| CloseReason {
                code: echoed(r.code),
                description: None,
            }),
            Ending::Gone => return,
        };
        // A client that reads nothing cannot take even a close frame: do not wait for it.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.session.close(frame)).await;
    }

    /// The identity the credential proves now, from the database; `None` when it no longer
    /// does.
    async fn recheck(&self) -> Option<Identity> {
        let current = self.connection.identity();
        let authenticated = match &self.proof {
            Proof::Bearer(credential) => self.accounts.authenticate_fresh(credential).await,
            Proof::Session(claims) => {
                self.accounts
                    .session_principal(claims.tenant, claims.user, claims.session)
                    .await
            }
        };
        match authenticated {
            Ok(a) => Some(Identity {
                role: a.principal.role,
                can_write: a.principal.require_scope(Scope::Write).is_ok(),
                ..current
            }),
            Err(AuthError::Db(e)) => {
                // The database, not the credential, failed: keep the socket; the next recheck
                // decides.
                tracing::warn!(error = %e, "websocket recheck failed; keeping the connection");
                Some(current)
            }
            Err(_) => None,
        }
    }

    /// The identity a new access token proves (API keys are not refreshed).
    async fn verify_refresh(&self, token: &str) -> Option<Identity> {
        let authenticated = self.accounts.authenticate(token).await.ok()?;
        matches!(
            authenticated.principal.credential,
            Credential::Session { .. }
        )
        .then(|| {
            Identity::of(
                &authenticated.principal,
                authenticated.tenant.id,
                authenticated.expires_at,
            )
        })
    }
}

fn expiry(at: Option<DateTime<Utc>>) -> Option<Instant> {
    let at = at?;
    let left = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Some(Instant::now() + left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_is_answered_with_its_own_code_unless_no_endpoint_may_send_it() {
        for code in [1000, 1001, 1003, 1008, 1011, 3000, 4000, 4999] {
            assert_eq!(u16::from(echoed(CloseCode::from(code))), code);
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert_eq!(echoed(CloseCode::from(code)), CloseCode::Protocol, "{code}");
        }
    }
}

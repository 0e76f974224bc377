//! Opening one PostgreSQL connection with a bounded connect time and server-side limits.

use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;

/// How a new connection is opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectOptions {
    /// Upper bound on TCP connect plus authentication.
    pub connect_timeout: Duration,
    /// Sets `statement_timeout` for the session, a little above this limit so that the
    /// client-side limit on a whole transaction fires first and the server still stops a
    /// runaway statement. `None` leaves the server default (migrations may legitimately run
    /// long, e.g. when building an index).
    pub statement_timeout: Option<Duration>,
    /// Probe an idle connection this often and give it up when the probes go unanswered:
    /// for long-lived connections (a listener, a lock holder) that must notice a dead peer.
    pub keepalive: Option<Duration>,
}

/// How much later than the client-side limit PostgreSQL cancels a statement.
const SERVER_SIDE_MARGIN: Duration = Duration::from_millis(250);

pub(crate) async fn connect(
    url: &str,
    options: ConnectOptions,
) -> Result<AsyncPgConnection, ConnectionError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| ConnectionError::InvalidConnectionUrl(e.to_string()))?;
    config.connect_timeout(options.connect_timeout);
    if config.get_application_name().is_none() {
        config.application_name("sovereign");
    }
    if let Some(limit) = options.statement_timeout {
        let existing = config.get_options().unwrap_or_default().to_owned();
        config.options(format!(
            "{existing} -c statement_timeout={}",
            (limit + SERVER_SIDE_MARGIN).as_millis()
        ));
    }
    if let Some(every) = options.keepalive {
        config
            .keepalives(true)
            .keepalives_idle(every)
            .keepalives_interval(every)
            .keepalives_retries(3)
            .tcp_user_timeout(every * 4);
    }
    let (client, connection) = tokio::time::timeout(
        options.connect_timeout,
        config.connect(tokio_postgres::NoTls),
    )
    .await
    .map_err(|_| {
        ConnectionError::BadConnection(format!(
            "no connection within {:?}",
            options.connect_timeout
        ))
    })?
    .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

/// Opens a connection of its own, outside the pool, for work that holds a session: `LISTEN`,
/// session-level advisory locks. TCP keepalives (every `keepalive`, given up after three missed
/// probes) make a dead peer show as an error within seconds instead of a silent hang. It has the
/// pool's statement timeout, and no transaction is ever left open on it by the pool's rules:
/// its owner closes it by dropping it.
pub async fn connect_dedicated(
    url: &sovereign_core::settings::SecretUrl,
    pool: &crate::PoolSettings,
    keepalive: Duration,
) -> Result<AsyncPgConnection, crate::DbError> {
    let options = ConnectOptions {
        connect_timeout: pool.connect_timeout,
        statement_timeout: Some(pool.statement_timeout),
        keepalive: Some(keepalive),
    };
    connect(url.expose(), options)
        .await
        .map_err(|e| crate::DbError::Unavailable(e.to_string()))
}

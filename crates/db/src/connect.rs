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

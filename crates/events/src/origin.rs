//! Where the current work came from — the request's id, the client's address and user agent —
//! so that events record it without every domain method taking it as an argument. The HTTP layer
//! runs each request inside [`scope`]; work outside a request (the command line, background
//! tasks) has none, and its events say so by leaving these empty.

use std::future::Future;
use std::net::IpAddr;

/// The request an event was caused by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub request_id: Option<String>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// Longest user agent recorded, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 512;

tokio::task_local! {
    static CURRENT: Origin;
}

/// Runs `work` with `origin` as the origin of every event it emits.
pub async fn scope<F: Future>(origin: Origin, work: F) -> F::Output {
    CURRENT.scope(origin, work).await
}

/// The origin of the work running now (empty outside [`scope`]).
#[must_use]
pub fn current() -> Origin {
    CURRENT.try_with(Clone::clone).unwrap_or_default()
}

impl Origin {
    pub(crate) fn user_agent_stored(&self) -> Option<String> {
        self.user_agent
            .as_deref()
            .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect())
    }
}

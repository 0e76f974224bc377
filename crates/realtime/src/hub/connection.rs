//! A connection: its bounded outbound queue, the close and recheck signals the transport acts
//! on, and the [`Connection`] handle the transport holds (frames in, [`Event`]s out).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use super::{Hub, Identity, lock, millis};
use crate::channel::Channel;
use crate::error::RealtimeError;
use crate::protocol::{RequestId, ServerFrame, close};

/// A text frame: cheap to clone (shared bytes), so one message is serialised once for all its
/// receivers and handed to the socket without a copy.
pub type Frame = bytestring::ByteString;

/// Frames received from and queued to clients by every hub of the process: counted in
/// process-wide atomics rather than through the metrics registry on each of the thousands of
/// deliveries a message can cause (see [`frame_counts`]).
pub(super) static FRAMES_IN: AtomicU64 = AtomicU64::new(0);
static FRAMES_OUT: AtomicU64 = AtomicU64::new(0);

/// (frames received from clients, frames queued to clients) since the process started.
#[must_use]
pub fn frame_counts() -> (u64, u64) {
    (
        FRAMES_IN.load(Ordering::Relaxed),
        FRAMES_OUT.load(Ordering::Relaxed),
    )
}

/// How the server closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: &'static str,
}

impl Close {
    pub const GOING_AWAY: Self = Self {
        code: close::GOING_AWAY,
        reason: "server shutting down",
    };
    pub const REVOKED: Self = Self {
        code: close::REVOKED,
        reason: "credential revoked",
    };
    pub const TOKEN_EXPIRED: Self = Self {
        code: close::TOKEN_EXPIRED,
        reason: "access token expired",
    };
    pub const ROLE_CHANGED: Self = Self {
        code: close::ROLE_CHANGED,
        reason: "role changed",
    };
    pub const SLOW_CONSUMER: Self = Self {
        code: close::SLOW_CONSUMER,
        reason: "slow consumer",
    };
    pub const HEARTBEAT_TIMEOUT: Self = Self {
        code: close::HEARTBEAT_TIMEOUT,
        reason: "no pong",
    };
    pub const PROTOCOL_VIOLATION: Self = Self {
        code: close::PROTOCOL_VIOLATION,
        reason: "too many invalid frames",
    };
    pub const MESSAGE_TOO_BIG: Self = Self {
        code: close::MESSAGE_TOO_BIG,
        reason: "frame too large",
    };
    pub const UNSUPPORTED_DATA: Self = Self {
        code: close::UNSUPPORTED_DATA,
        reason: "text frames only",
    };
}

/// What the transport must do next for a connection.
#[derive(Debug)]
pub enum Event {
    /// Send this text frame.
    Send(Frame),
    /// Close with this code.
    Close(Close),
    /// Check the credential again (a revocation concerned it) and report with
    /// [`Connection::rechecked`].
    Recheck,
}

#[derive(Default)]
pub(super) struct Signals {
    close: Option<Close>,
    recheck: bool,
}

/// What the hub holds of a connection: shared by its registry entries and its [`Connection`].
pub(super) struct ConnShared {
    pub(super) id: u64,
    pub(super) uuid: Uuid,
    pub(super) identity: Mutex<Identity>,
    pub(super) tx: mpsc::Sender<Frame>,
    pub(super) signals: Mutex<Signals>,
    pub(super) notify: Notify,
    /// Channel name → channel, for this connection.
    pub(super) subscriptions: Mutex<HashMap<Arc<str>, Channel>>,
}

impl ConnShared {
    pub(super) fn identity(&self) -> Identity {
        *lock(&self.identity)
    }

    /// Queues a frame without waiting; a full queue closes the connection as a slow consumer.
    pub(super) fn push(&self, frame: Frame) {
        match self.tx.try_send(frame) {
            Ok(()) => {
                FRAMES_OUT.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.signal_close(Close::SLOW_CONSUMER) {
                    metrics::counter!("sovereign_ws_slow_consumers_total").increment(1);
                    tracing::info!(connection = %self.uuid, "slow consumer disconnected");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    pub(super) fn push_frame(&self, frame: &ServerFrame<'_>) {
        self.push(Frame::from(frame.to_text()));
    }

    pub(super) fn push_error(&self, id: Option<&RequestId>, error: &RealtimeError) {
        let retry_after_ms = sovereign_core::Diagnostic::retry_after(error).map(millis);
        self.push_frame(&ServerFrame::Error {
            id,
            code: sovereign_core::Diagnostic::code(error),
            message: &error.to_string(),
            retry_after_ms,
        });
    }

    /// Asks the transport to close; the first reason wins. True when this call set it.
    pub(super) fn signal_close(&self, reason: Close) -> bool {
        let set = {
            let mut signals = lock(&self.signals);
            if signals.close.is_some() {
                false
            } else {
                signals.close = Some(reason);
                true
            }
        };
        if set {
            self.notify.notify_one();
        }
        set
    }

    pub(super) fn signal_recheck(&self) {
        lock(&self.signals).recheck = true;
        self.notify.notify_one();
    }
}

/// One connection's end of the hub. Dropping it unsubscribes everything.
pub struct Connection {
    pub(super) hub: Hub,
    pub(super) shared: Arc<ConnShared>,
    pub(super) rx: mpsc::Receiver<Frame>,
    pub(super) invalid_frames: u32,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.shared.uuid)
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.hub.unregister(&self.shared);
    }
}

impl Connection {
    /// The connection's public id (the one in `welcome`).
    #[must_use]
    pub fn id(&self) -> Uuid {
        self.shared.uuid
    }

    #[must_use]
    pub fn identity(&self) -> Identity {
        self.shared.identity()
    }

    /// The next thing to do: a close or a recheck takes precedence over queued frames.
    pub async fn next_event(&mut self) -> Event {
        loop {
            {
                let mut signals = lock(&self.shared.signals);
                if let Some(reason) = signals.close {
                    return Event::Close(reason);
                }
                if std::mem::take(&mut signals.recheck) {
                    return Event::Recheck;
                }
            }
            tokio::select! {
                biased;
                () = self.shared.notify.notified() => {}
                frame = self.rx.recv() => match frame {
                    Some(frame) => return Event::Send(frame),
                    None => return Event::Close(Close::GOING_AWAY),
                },
            }
        }
    }

    /// Asks for this connection to be closed (for example, a missed pong).
    pub fn close(&self, reason: Close) {
        self.shared.signal_close(reason);
    }
}

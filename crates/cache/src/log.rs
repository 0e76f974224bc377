//! Capped, expiring logs with offsets and an epoch: the history behind realtime channels.
//!
//! A log is addressed by a key. Each append gets the next offset (1, 2, 3, …) and the log keeps
//! its newest `retain` entries for `ttl` after the last append. The epoch names one continuous
//! life of the log: when the log expires or the cache loses it (a Redis restart), the next append
//! starts a new epoch at offset 1, so a reader holding an `(epoch, offset)` position can always
//! tell whether what it missed can still be replayed. On Redis a log is a stream (`XADD` with
//! `MAXLEN`) beside a counter and the epoch, all changed by one script; in-process it is a ring.

use std::sync::Arc;

/// The newest position of a log: its epoch and the offset of its last entry (0 when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPosition {
    pub epoch: String,
    pub offset: u64,
}

/// One entry of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub epoch: String,
    pub offset: u64,
    pub data: Arc<[u8]>,
}

impl LogEntry {
    /// The form an entry travels in when an append announces it on a channel:
    /// `<epoch> <offset> <data>`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        encode(&self.epoch, self.offset, &self.data)
    }

    /// Reads what [`LogEntry::encode`] wrote; `None` for anything else.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut parts = bytes.splitn(3, |b| *b == b' ');
        let epoch = std::str::from_utf8(parts.next()?).ok()?;
        let offset = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let data = parts.next()?;
        Some(Self {
            epoch: epoch.to_owned(),
            offset,
            data: Arc::from(data),
        })
    }
}

pub(crate) fn encode(epoch: &str, offset: u64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(epoch.len() + data.len() + 22);
    out.extend_from_slice(epoch.as_bytes());
    out.push(b' ');
    out.extend_from_slice(offset.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(data);
    out
}

/// What a reader asking to resume from a position gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every entry after the position, in order (possibly none), and the log's position now.
    Complete {
        entries: Vec<LogEntry>,
        position: LogPosition,
    },
    /// The log no longer covers the position (another epoch, or older entries trimmed or
    /// expired); the reader must start over from `position`.
    Gap { position: LogPosition },
}

/// A fresh epoch name: 16 hex digits from the thread-local CSPRNG.
pub(crate) fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Decides a replay from the log's state: its position, the offset of its oldest retained entry
/// (0 when it has none) and the entries after the reader's offset.
pub(crate) fn replay(
    position: LogPosition,
    oldest: u64,
    since_epoch: &str,
    since_offset: u64,
    entries: Vec<LogEntry>,
) -> Replay {
    let covered = since_epoch == position.epoch
        && since_offset <= position.offset
        && (since_offset == position.offset || (oldest != 0 && oldest <= since_offset + 1));
    if covered {
        Replay::Complete { entries, position }
    } else {
        Replay::Gap { position }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: &str, offset: u64) -> LogPosition {
        LogPosition {
            epoch: epoch.to_owned(),
            offset,
        }
    }

    #[test]
    fn entries_round_trip_through_their_wire_form() {
        let entry = LogEntry {
            epoch: "00ff".to_owned(),
            offset: 42,
            data: Arc::from(&b"{\"a\": \"b c\"}"[..]),
        };
        assert_eq!(LogEntry::decode(&entry.encode()), Some(entry));
        assert_eq!(LogEntry::decode(b"no-offset"), None);
        assert_eq!(LogEntry::decode(b"e x data"), None);
    }

    #[test]
    fn a_replay_is_complete_only_when_the_log_still_holds_the_next_offset() {
        assert!(matches!(
            replay(at("e", 10), 5, "e", 4, vec![]),
            Replay::Complete { .. }
        ));
        assert!(matches!(
            replay(at("e", 10), 6, "e", 4, vec![]),
            Replay::Gap { .. }
        ));
        // Nothing missed: complete even when nothing is retained.
        assert!(matches!(
            replay(at("e", 10), 0, "e", 10, vec![]),
            Replay::Complete { .. }
        ));
        // Another epoch, or an offset from the future, is a gap.
        assert!(matches!(
            replay(at("f", 10), 1, "e", 4, vec![]),
            Replay::Gap { .. }
        ));
        assert!(matches!(
            replay(at("e", 10), 1, "e", 11, vec![]),
            Replay::Gap { .. }
        ));
    }
}

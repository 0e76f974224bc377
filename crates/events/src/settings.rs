//! The events settings: whether this instance competes to dispatch, how often the dispatcher
//! looks without being woken, and how long dispatched events are kept.

use std::time::Duration;

use sovereign_core::setting;
use sovereign_core::settings::DefaultValue::Value;
use sovereign_core::settings::{ReadSettings, Reader, with_defaults};

setting!(
    EVENTS_DISPATCH,
    "EVENTS_DISPATCH",
    Value("true"),
    "Whether this instance competes to be the deployment's one event dispatcher (webhooks, change feed, realtime events). At least one instance must."
);
setting!(
    EVENTS_POLL_INTERVAL_MS,
    "EVENTS_POLL_INTERVAL_MS",
    Value("5000"),
    "How often the dispatcher looks at every tenant for events without being woken (a backstop for notifications sent while no dispatcher listened)."
);
setting!(
    EVENTS_RETENTION_HOURS,
    "EVENTS_RETENTION_HOURS",
    Value("168"),
    "How long dispatched events are kept in the outbox before they are deleted (the audit log has its own retention)."
);
setting!(
    AUDIT_RETENTION_MONTHS,
    "AUDIT_RETENTION_MONTHS",
    Value("13"),
    "Whole months of audit log `sovereign audit prune` keeps (besides the current one); older months are dropped."
);

/// How events are dispatched and kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsSettings {
    pub dispatch: bool,
    pub poll_interval: Duration,
    /// Dispatched events older than this are deleted.
    pub retention: Duration,
    pub audit_retention_months: u32,
}

impl ReadSettings for EventsSettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        r.section("Events and audit");
        Some(Self::from_reader(r))
    }
}

impl Default for EventsSettings {
    fn default() -> Self {
        with_defaults(Self::from_reader)
    }
}

impl EventsSettings {
    fn from_reader(r: &mut Reader<'_>) -> Self {
        Self {
            dispatch: r.value(&EVENTS_DISPATCH),
            poll_interval: r.millis(&EVENTS_POLL_INTERVAL_MS, 100, 600_000),
            retention: Duration::from_secs(
                3600 * r.bounded::<u64>(&EVENTS_RETENTION_HOURS, 1, 24 * 366),
            ),
            audit_retention_months: r.bounded(&AUDIT_RETENTION_MONTHS, 1, 1200),
        }
    }
}

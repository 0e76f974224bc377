//! Logging set-up: `tracing` events, filtered by `LOG_LEVEL`, written as JSON (one object per
//! line, span fields such as `request_id` included) or as readable text.
//!
//! Lines go to standard error through a batching writer: request handlers append each formatted
//! line to a shared buffer, and one thread writes the buffer out every [`FLUSH_INTERVAL`] or as
//! soon as it holds [`FLUSH_BYTES`]. A channel-per-line writer wakes its thread for every line,
//! which under load cost more CPU than formatting the lines; batching makes that one wake-up per
//! interval. When output cannot keep up and the buffer reaches [`MAX_BUFFERED_BYTES`], handlers
//! wait: losing log lines silently would be worse than slowing down.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

mod settings;

pub use settings::{LogFormat, LogSettings};

/// Longest a line waits in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Buffer size that triggers a write before the interval ends.
pub const FLUSH_BYTES: usize = 256 * 1024;
/// Buffer size at which handlers wait for the writer.
pub const MAX_BUFFERED_BYTES: usize = 16 * 1024 * 1024;

/// Telemetry could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
    #[error("cannot start the log writer thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Installs the global subscriber writing to standard error. Call once, at start-up, before
/// anything logs; keep the guard until exit (dropping it writes what is left).
pub fn init(settings: &LogSettings) -> Result<LogGuard, TelemetryError> {
    let filter = EnvFilter::builder().parse(&settings.filter)?;
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = BatchWriter::spawn(std::io::stderr())?;
    let registry = tracing_subscriber::registry().with(filter);
    match settings.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            )
            .try_init()?,
        LogFormat::Pretty | LogFormat::Auto => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_target(false)
                    .with_ansi(ansi)
                    .with_writer(writer),
            )
            .try_init()?,
    }
    Ok(guard)
}

#[derive(Default)]
struct State {
    buffer: Vec<u8>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signals the writer: a full buffer, or shutdown.
    wake_writer: Condvar,
    /// Signals waiting handlers: the buffer was drained.
    drained: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain bytes behind; keep logging.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A `MakeWriter` appending whole lines to the shared buffer.
#[derive(Clone)]
pub struct BatchWriter(Arc<Shared>);

impl BatchWriter {
    /// Starts the writer thread draining into `out`.
    pub fn spawn<W: Write + Send + 'static>(out: W) -> std::io::Result<(Self, LogGuard)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake_writer: Condvar::new(),
            drained: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("sovereign-log".to_owned())
            .spawn({
                let shared = Arc::clone(&shared);
                move || drain(&shared, out)
            })?;
        Ok((
            Self(Arc::clone(&shared)),
            LogGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }
}

fn drain<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    loop {
        let closed = {
            let mut state = shared.lock();
            if !state.closed && state.buffer.len() < FLUSH_BYTES {
                state = shared
                    .wake_writer
                    .wait_timeout(state, FLUSH_INTERVAL)
                    .map_or_else(|e| e.into_inner().0, |(guard, _)| guard);
            }
            std::mem::swap(&mut batch, &mut state.buffer);
            shared.drained.notify_all();
            state.closed
        };
        if !batch.is_empty() {
            // Nowhere to report a failing stderr; drop the batch and carry on.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
        }
        if closed {
            let rest = std::mem::take(&mut shared.lock().buffer);
            let _ = out.write_all(&rest).and_then(|()| out.flush());
            return;
        }
    }
}

impl Write for BatchWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut state = self.0.lock();
        while state.buffer.len() >= MAX_BUFFERED_BYTES && !state.closed {
            self.0.wake_writer.notify_one();
            state = self
                .0
                .drained
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.buffer.extend_from_slice(bytes);
        if state.buffer.len() >= FLUSH_BYTES {
            self.0.wake_writer.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

/// Keeps the log writer running; dropping it writes the remaining lines and stops the thread.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard").finish_non_exhaustive()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake_writer.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_from_every_thread_is_written_in_order_per_thread() {
        let sink = Sink::default();
        let (writer, guard) = BatchWriter::spawn(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        writer
                            .make_writer()
                            .write_all(format!("t{t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 20_000);
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("t{t} line ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..5_000).collect::<Vec<_>>());
        }
    }

    #[test]
    fn lines_are_written_within_the_interval_without_more_traffic() {
        let sink = Sink::default();
        let (writer, _guard) = BatchWriter::spawn(sink.clone()).unwrap();
        writer.make_writer().write_all(b"lonely line\n").unwrap();
        // Wait on the observable effect, bounded well above the interval.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::yield_now();
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"lonely line\n");
    }
}

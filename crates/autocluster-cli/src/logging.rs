//! The agent's log: lines go to stderr through a bounded queue and a thread of their own,
//! so that logging never panics and never blocks the engine.
//!
//! tracing's writer to stderr fails the way stderr does: a closed pipe (`agent 2>&1 | head`,
//! a log collector restarting) is an error that tracing reports with `eprint!`, which
//! panics, ending whichever task logged; a full pipe (nobody reads) blocks the task that
//! logs, and with it a runtime thread. Here a line is formatted in the task, queued without
//! waiting, and written by the writer thread. A line that finds the queue full is dropped; a
//! write that fails is dropped too; both are counted
//! (`autocluster_log_lines_dropped_total{reason}`).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Lines that may wait for the writer thread (a few hundred KiB).
const QUEUE: usize = 2048;

/// Lines dropped because the queue was full (stderr blocked or slow).
static DROPPED_FULL: AtomicU64 = AtomicU64::new(0);
/// Lines dropped because writing them failed (stderr closed).
static DROPPED_WRITE: AtomicU64 = AtomicU64::new(0);
/// The queue to the writer thread, once logging is set up.
static QUEUE_TX: OnceLock<SyncSender<Message>> = OnceLock::new();

enum Message {
    Line(Vec<u8>),
    /// Answered once every line queued before it was written (or dropped).
    Flush(SyncSender<()>),
}

/// Lines dropped so far: (queue full, write failed).
pub fn dropped() -> (u64, u64) {
    (
        DROPPED_FULL.load(Ordering::Relaxed),
        DROPPED_WRITE.load(Ordering::Relaxed),
    )
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), through the writer thread; a
/// panic is logged the same way (the default hook would write to stderr and could block).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let Some(writer) = QueuedStderr::start() else {
        return;
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if installed.is_ok() {
        std::panic::set_hook(Box::new(|info| {
            let backtrace = std::backtrace::Backtrace::capture();
            match backtrace.status() {
                std::backtrace::BacktraceStatus::Captured => {
                    tracing::error!("{info}\n{backtrace}")
                }
                _ => tracing::error!("{info}"),
            }
        }));
    }
}

/// Waits until the lines logged so far are written, at most `within`: for the last lines
/// before the process exits. Returns at once when logging was never set up.
pub fn flush(within: Duration) {
    let Some(tx) = QUEUE_TX.get() else {
        return;
    };
    let deadline = Instant::now() + within;
    let (ack_tx, ack_rx) = sync_channel(1);
    let mut message = Message::Flush(ack_tx);
    loop {
        match tx.try_send(message) {
            Ok(()) => break,
            Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                message = m;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return,
        }
    }
    let _ = ack_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
}

/// Writes `text` on stderr, after the queued lines (waiting for them at most `within`), and
/// ignores a failure: for the last message of the process.
pub fn last_words(text: &str, within: Duration) {
    flush(within);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", text.trim_end());
}

/// Queues each formatted line for the writer thread.
#[derive(Clone, Copy)]
struct QueuedStderr;

impl QueuedStderr {
    /// Starts the writer thread (once); `None` if the thread cannot start.
    fn start() -> Option<QueuedStderr> {
        if QUEUE_TX.get().is_some() {
            return Some(QueuedStderr);
        }
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("log writer".into())
            .spawn(move || write_lines(rx))
            .ok()?;
        let _ = QUEUE_TX.set(tx);
        Some(QueuedStderr)
    }
}

/// The writer thread: every line to stderr, in order; a failed write is counted, not retried.
fn write_lines(rx: Receiver<Message>) {
    let stderr = std::io::stderr();
    for message in rx {
        match message {
            Message::Line(line) => {
                let mut err = stderr.lock();
                if err.write_all(&line).and_then(|()| err.flush()).is_err() {
                    DROPPED_WRITE.fetch_add(1, Ordering::Relaxed);
                }
            }
            Message::Flush(ack) => {
                let _ = ack.try_send(());
            }
        }
    }
}

/// One event's line, collected as tracing writes it and queued when dropped.
pub struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.0);
        let sent = QUEUE_TX.get().map(|tx| tx.try_send(Message::Line(line)));
        if !matches!(sent, Some(Ok(()))) {
            DROPPED_FULL.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<'a> MakeWriter<'a> for QueuedStderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::with_capacity(256))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_queued_whole_when_its_writer_drops() {
        let (tx, rx) = sync_channel(4);
        let _ = QUEUE_TX.set(tx);
        {
            let mut line = QueuedStderr.make_writer();
            line.write_all(b"one ").unwrap();
            line.write_all(b"line\n").unwrap();
        }
        match rx.try_recv() {
            Ok(Message::Line(bytes)) => assert_eq!(bytes, b"one line\n"),
            _ => panic!("one line queued"),
        }
        let before = dropped().0;
        for _ in 0..5 {
            let mut line = QueuedStderr.make_writer();
            line.write_all(b"x\n").unwrap();
        }
        assert_eq!(dropped().0 - before, 1, "the fifth finds the queue full");
    }
}

//! A handler's stdout and stderr: their last bytes, read while it runs, and taken when its
//! shell exits without waiting for the pipes to close (a process the handler left running in
//! the background may hold them for as long as it lives).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How much of a handler's stdout and stderr the log shows.
const OUTPUT_TAIL: usize = 2048;
/// Once the shell exited: how long its output pipes may stay silent before what they held
/// is taken as all there is.
const OUTPUT_IDLE: Duration = Duration::from_millis(50);
/// Once the shell exited: the longest its output is read.
const OUTPUT_MAX: Duration = Duration::from_millis(250);

/// The last [`OUTPUT_TAIL`] bytes of an output pipe, read while the handler runs.
pub struct Tail {
    kept: Arc<Mutex<Vec<u8>>>,
    /// Bumped at every read; closed when the pipe closed.
    progress: watch::Receiver<u64>,
    reader: JoinHandle<()>,
}

impl Tail {
    pub fn collect(pipe: Option<impl AsyncRead + Unpin + Send + 'static>) -> Tail {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let (tx, progress) = watch::channel(0u64);
        let sink = kept.clone();
        let reader = tokio::spawn(async move {
            let Some(mut pipe) = pipe else { return };
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                let mut kept = sink.lock().unwrap_or_else(|p| p.into_inner());
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > OUTPUT_TAIL {
                    let excess = kept.len() - OUTPUT_TAIL;
                    kept.drain(..excess);
                }
                tx.send_modify(|n| *n += 1);
            }
        });
        Tail {
            kept,
            progress,
            reader,
        }
    }

    /// Once the handler exited: what the pipe held, without waiting for it to close.
    pub async fn finish(mut self) -> String {
        let deadline = tokio::time::Instant::now() + OUTPUT_MAX;
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(OUTPUT_IDLE, self.progress.changed()).await {
                Ok(Ok(())) => continue,
                // Closed: all read. Timed out: nothing more is coming now.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        self.reader.abort();
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&kept).into_owned()
    }
}

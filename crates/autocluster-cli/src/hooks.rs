//! The agent's hooks, as Serf's event handlers: `--on-change CMD` runs a command on every
//! membership event, `--members-file PATH` keeps a file listing the running members.
//!
//! A handler runs through `sh -c`, one at a time in event order, with the event in
//! environment variables (`AUTOCLUSTER_EVENT`, `_NODE`, `_INCARNATION`, `_REASON`, `_CLUSTER`,
//! `_SELF`; none has the `__` of a configuration override, so an `autocluster` command the
//! handler runs does not read them as configuration) and the running members, one node name a line, on
//! its standard input. Each is bounded by `--hook-timeout`: past it, the handler's whole
//! process group is killed. A failing handler is logged, with its exit status and the tail of
//! its stderr, and never stops the agent.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use autocluster::plugin::Incarnation;
use autocluster::{Cluster, Event, EventKind, LeftReason, NodeName, View};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::Failure;

/// How much of a failing handler's stderr the log shows.
const STDERR_TAIL: usize = 2048;
/// How long a handler's output pipes may stay open after it exited (a process it left in
/// the background may hold them).
const PIPE_GRACE: Duration = Duration::from_secs(1);
/// How long to wait before writing the members file again after a failed write.
const WRITE_RETRY: Duration = Duration::from_secs(1);

/// What the hooks do, from the agent's flags.
#[derive(Debug, Clone)]
pub struct HookConfig {
    /// `--on-change CMD`.
    pub on_change: Option<String>,
    /// `--members-file PATH`.
    pub members_file: Option<PathBuf>,
    /// `--hook-timeout`.
    pub timeout: Duration,
    /// `cluster.name`, for `AUTOCLUSTER_CLUSTER`.
    pub cluster: String,
    /// This node, for `AUTOCLUSTER_SELF`.
    pub self_node: NodeName,
}

impl HookConfig {
    /// Writes the members file once, empty (this node knows of no member yet), so that a
    /// path that cannot be written is a configuration error before the node registers.
    pub fn prepare(&self) -> Result<(), Failure> {
        if let Some(path) = &self.members_file {
            write_atomically(path, &[]).map_err(|e| {
                Failure::config(format!(
                    "--members-file {}: cannot write it: {e}",
                    path.display()
                ))
            })?;
        }
        Ok(())
    }
}

/// The running hook tasks.
pub struct Hooks {
    tasks: Vec<JoinHandle<()>>,
}

impl Hooks {
    /// Starts the hooks over `cluster`: they follow its view and events until it stops.
    pub fn start(config: HookConfig, cluster: &Cluster) -> Hooks {
        let mut tasks = Vec::new();
        if let Some(path) = config.members_file.clone() {
            tasks.push(tokio::spawn(keep_members_file(path, cluster.watch())));
        }
        if let Some(cmd) = config.on_change.clone() {
            // Subscribe before reading the view: a member is then either in the view read
            // here or in an event received later (or both, which `Pending` sorts out).
            let events = cluster.events();
            let view = cluster.watch();
            tasks.push(tokio::spawn(run_handlers(cmd, config, events, view)));
        }
        Hooks { tasks }
    }

    /// Once the cluster has stopped: lets the handlers of the events still queued run, for at
    /// most `within`; then stops, killing a handler still running.
    pub async fn stop(self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!("hooks still running after {within:?}; stopping them");
                task.abort();
                let _ = task.await;
            }
        }
    }
}

/// Rewrites `path` whenever the set of running members changes.
async fn keep_members_file(path: PathBuf, mut view: watch::Receiver<View>) {
    let mut written: Option<Vec<String>> = Some(Vec::new());
    loop {
        let running = running_members(&view.borrow_and_update());
        let mut failed = false;
        if written.as_ref() != Some(&running) {
            let (p, lines) = (path.clone(), running.clone());
            match tokio::task::spawn_blocking(move || write_atomically(&p, &lines)).await {
                Ok(Ok(())) => {
                    tracing::debug!(path = %path.display(), members = running.len(), "members file written");
                    written = Some(running);
                }
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), "cannot write the members file: {e}; trying again");
                    written = None;
                    failed = true;
                }
                Err(e) => {
                    tracing::warn!("writing the members file failed: {e}");
                    written = None;
                    failed = true;
                }
            }
        }
        if failed {
            tokio::select! {
                changed = view.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(WRITE_RETRY) => {}
            }
        } else if view.changed().await.is_err() {
            return;
        }
    }
}

/// The running members' names, sorted.
fn running_members(view: &View) -> Vec<String> {
    let mut names: Vec<String> = view.running_nodes().iter().map(|n| n.to_string()).collect();
    names.sort();
    names
}

/// Writes `lines` (one a line) to `path` so that a reader sees the old file or the new one,
/// never a part: a temporary file in the same directory, fsync, rename, fsync the directory.
pub fn write_atomically(path: &Path, lines: &[String]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is synced; not every system lets
        // a directory be opened for that, and the file is in place either way.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What a handler is told about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HookEvent {
    kind: &'static str,
    node: NodeName,
    incarnation: Incarnation,
    reason: Option<&'static str>,
}

impl HookEvent {
    fn of(event: &Event) -> HookEvent {
        HookEvent {
            kind: event.kind.as_str(),
            node: event.node.clone(),
            incarnation: event.member.incarnation,
            reason: event.reason.map(reason_str),
        }
    }
}

fn reason_str(reason: LeftReason) -> &'static str {
    match reason {
        LeftReason::Deregistered => "deregistered",
        LeftReason::Expired => "expired",
        LeftReason::Vanished => "vanished",
        LeftReason::Stopped => "stopped",
        LeftReason::Restarted => "restarted",
    }
}

/// Runs `cmd` for every event, in order, one at a time; for the members already running
/// when the hooks start, a `joined` each first.
async fn run_handlers(
    cmd: String,
    config: HookConfig,
    mut events: broadcast::Receiver<Event>,
    view: watch::Receiver<View>,
) {
    // Members in the view now may have had their `joined` sent before we subscribed, or may
    // have it still to come: run it now, and skip the one that comes later.
    let mut pending: HashMap<NodeName, Incarnation> = HashMap::new();
    let initial: Vec<HookEvent> = view
        .borrow()
        .members()
        .filter(|e| e.status == autocluster::Status::Running)
        .map(|e| HookEvent {
            kind: EventKind::Joined.as_str(),
            node: e.member.node.clone(),
            incarnation: e.member.incarnation,
            reason: None,
        })
        .collect();
    for event in initial {
        pending.insert(event.node.clone(), event.incarnation);
        run_handler(&cmd, &config, &event, &view).await;
    }
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    "the --on-change handlers fell behind: {missed} events were skipped"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if let Some(incarnation) = pending.remove(&event.node) {
            if event.kind == EventKind::Joined && event.member.incarnation == incarnation {
                continue;
            }
        }
        run_handler(&cmd, &config, &HookEvent::of(&event), &view).await;
    }
}

/// Runs one handler to its end or to the timeout; logs what went wrong.
async fn run_handler(
    cmd: &str,
    config: &HookConfig,
    event: &HookEvent,
    view: &watch::Receiver<View>,
) {
    let members = running_members(&view.borrow());
    let mut stdin = members.join("\n");
    if !members.is_empty() {
        stdin.push('\n');
    }
    let started = Instant::now();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .env("AUTOCLUSTER_EVENT", event.kind)
        .env("AUTOCLUSTER_NODE", event.node.as_str())
        .env("AUTOCLUSTER_INCARNATION", event.incarnation.to_string())
        .env("AUTOCLUSTER_CLUSTER", &config.cluster)
        .env("AUTOCLUSTER_SELF", config.self_node.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match event.reason {
        Some(reason) => command.env("AUTOCLUSTER_REASON", reason),
        None => command.env_remove("AUTOCLUSTER_REASON"),
    };
    let mut handler = match Handler::spawn(command) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(event = event.kind, node = %event.node, "cannot run the --on-change command: {e}");
            return;
        }
    };
    let input = handler.child.stdin.take();
    let stdout = tokio::spawn(tail(handler.child.stdout.take(), STDERR_TAIL));
    let stderr = tokio::spawn(tail(handler.child.stderr.take(), STDERR_TAIL));
    let feed = async move {
        if let Some(mut input) = input {
            // A handler that does not read its input closes the pipe: not an error.
            let _ = input.write_all(stdin.as_bytes()).await;
        }
    };
    let outcome = tokio::time::timeout(config.timeout, async {
        let ((), status) = tokio::join!(feed, handler.child.wait());
        status
    })
    .await;
    let outcome = match outcome {
        Ok(Ok(status)) => {
            handler.exited = true;
            Outcome::Exited(status)
        }
        Ok(Err(e)) => Outcome::WaitFailed(e),
        Err(_) => {
            handler.kill().await;
            Outcome::TimedOut
        }
    };
    let out = pipe_tail(stdout).await;
    let err = pipe_tail(stderr).await;
    let elapsed = started.elapsed();
    match outcome {
        Outcome::Exited(status) if status.success() => {
            tracing::debug!(event = event.kind, node = %event.node, ?elapsed, stdout = %out.trim_end(), "--on-change handler done");
        }
        Outcome::Exited(status) => {
            tracing::warn!(
                event = event.kind,
                node = %event.node,
                %status,
                "the --on-change handler failed ({status}); stderr: {}",
                one_line(&err)
            );
        }
        Outcome::TimedOut => {
            tracing::warn!(
                event = event.kind,
                node = %event.node,
                "the --on-change handler did not finish within {:?} (--hook-timeout) and was killed; stderr: {}",
                config.timeout,
                one_line(&err)
            );
        }
        Outcome::WaitFailed(e) => {
            tracing::warn!(event = event.kind, node = %event.node, "waiting for the --on-change handler failed: {e}");
        }
    }
}

enum Outcome {
    Exited(ExitStatus),
    TimedOut,
    WaitFailed(std::io::Error),
}

/// A running handler in its own process group; dropped before it exited (the agent stops),
/// the whole group is killed.
struct Handler {
    child: Child,
    exited: bool,
}

impl Handler {
    fn spawn(mut command: Command) -> std::io::Result<Handler> {
        command.kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        Ok(Handler {
            child: command.spawn()?,
            exited: false,
        })
    }

    /// Kills the process group (the shell and whatever it started) and reaps the shell.
    async fn kill(&mut self) {
        self.kill_group();
        let _ = self.child.start_kill();
        if let Ok(Ok(_)) = tokio::time::timeout(PIPE_GRACE, self.child.wait()).await {
            self.exited = true;
        }
    }

    fn kill_group(&self) {
        #[cfg(unix)]
        if let Some(pid) = self
            .child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32))
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        if !self.exited {
            self.kill_group();
        }
    }
}

/// Reads `pipe` to its end, keeping the last `max` bytes.
async fn tail(pipe: Option<impl AsyncRead + Unpin>, max: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > max {
                    kept.drain(..kept.len() - max);
                }
            }
        }
    }
}

/// The tail a reader collected, waiting at most [`PIPE_GRACE`] for the pipe to close.
async fn pipe_tail(mut reader: JoinHandle<Vec<u8>>) -> String {
    match tokio::time::timeout(PIPE_GRACE, &mut reader).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => {
            reader.abort();
            String::new()
        }
    }
}

/// `text` on one line, for a log message.
fn one_line(text: &str) -> String {
    let joined = text.trim().lines().collect::<Vec<_>>().join(" | ");
    if joined.is_empty() {
        "(empty)".to_string()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_members_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("members");
        write_atomically(&path, &["a@h".into(), "b@h".into()]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a@h\nb@h\n");
        write_atomically(&path, &[]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_members_file_in_a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_atomically(&dir.path().join("no/such/members"), &[]).is_err());
    }

    #[test]
    fn stderr_is_shown_on_one_line() {
        assert_eq!(one_line("a\nb\n"), "a | b");
        assert_eq!(one_line(""), "(empty)");
    }
}

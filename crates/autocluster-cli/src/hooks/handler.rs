//! One `--on-change` handler run: `sh -c CMD` in its own process group, the event in its
//! environment, the running members on its standard input, bounded by `--hook-timeout`.
//!
//! The run ends when the shell exits. Whatever the handler left running in the background
//! may hold its stdin, stdout or stderr open for as long as it lives: the run does not wait
//! for those pipes to close, it keeps what they held when the shell exited (see
//! [`super::output`]).

use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use autocluster::plugin::Incarnation;
use autocluster::{Event, LeftReason, NodeName};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use super::output::Tail;
use super::{HookConfig, HookStats};
use crate::limits::RateLimited;

/// How long a killed handler's shell may take to be reaped.
const REAP_GRACE: Duration = Duration::from_secs(1);
/// Retrying a spawn that failed for want of descriptors, memory or processes: the first
/// delay, doubled up to the second.
const SPAWN_RETRY_MIN: Duration = Duration::from_millis(50);
const SPAWN_RETRY_MAX: Duration = Duration::from_secs(2);

/// What a handler is told about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent {
    pub kind: &'static str,
    pub node: NodeName,
    pub incarnation: Incarnation,
    pub reason: Option<&'static str>,
    /// The member as JSON (`node`, `incarnation`, `meta`), for `AUTOCLUSTER_MEMBER`.
    pub member: String,
    /// Its labels as a JSON object, for `AUTOCLUSTER_LABELS` (`{}` without any).
    pub labels: String,
    /// Its endpoints as a JSON object, for `AUTOCLUSTER_ENDPOINTS` (`{}` without any).
    pub endpoints: String,
    /// With `foreign_cluster`: the other cluster's id (escaped), for
    /// `AUTOCLUSTER_FOREIGN_CLUSTER_ID`.
    pub foreign_cluster_id: Option<String>,
}

impl HookEvent {
    /// The event of a formation decision: `formed`, the node to join (this one when it
    /// seeds).
    pub fn formed(f: &autocluster::Formation) -> HookEvent {
        HookEvent {
            kind: "formed",
            node: f.target.clone(),
            incarnation: Incarnation(0),
            reason: None,
            member: "{}".into(),
            labels: "{}".into(),
            endpoints: "{}".into(),
            foreign_cluster_id: None,
        }
    }

    /// The event of a member of this cluster's name seen in another cluster (two clusters
    /// formed): `foreign_cluster`, the member, and its cluster id.
    pub fn foreign(m: &autocluster::ForeignMember) -> HookEvent {
        HookEvent {
            kind: "foreign_cluster",
            node: m.node.clone(),
            incarnation: Incarnation(0),
            reason: None,
            member: serde_json::to_string(m).unwrap_or_else(|_| "{}".into()),
            labels: "{}".into(),
            endpoints: "{}".into(),
            foreign_cluster_id: Some(m.cluster_id.clone()),
        }
    }

    pub fn of(event: &Event) -> HookEvent {
        let meta = event.member.meta.as_ref();
        HookEvent {
            kind: event.kind.as_str(),
            node: event.node.clone(),
            incarnation: event.member.incarnation,
            reason: event.reason.map(reason_str),
            // JSON escapes every control character: what a peer registered cannot reach the
            // handler's environment unescaped.
            member: serde_json::to_string(&event.member).unwrap_or_else(|_| "{}".into()),
            labels: json_object(meta.map(|m| &m.labels)),
            endpoints: json_object(meta.map(|m| &m.endpoints)),
            foreign_cluster_id: None,
        }
    }
}

fn json_object(map: Option<&std::collections::BTreeMap<String, String>>) -> String {
    map.and_then(|m| serde_json::to_string(m).ok())
        .unwrap_or_else(|| "{}".into())
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

/// Runs one handler to its end or to the timeout and logs what went wrong. `started` turns
/// true once the handler's process runs (a caller that drops this future then knows it
/// killed a running handler, not one still waiting to start).
pub async fn run_handler(
    config: &HookConfig,
    stats: &HookStats,
    event: &HookEvent,
    members: &[String],
    started: &AtomicBool,
) {
    let cmd = config.on_change.as_deref().unwrap_or_default();
    let mut stdin = members.join("\n");
    if !members.is_empty() {
        stdin.push('\n');
    }
    let Some(mut handler) = spawn_retrying(config, stats, event, cmd).await else {
        return;
    };
    started.store(true, Ordering::Relaxed);
    let begun = Instant::now();
    let input = handler.child.stdin.take();
    let stdout = Tail::collect(handler.child.stdout.take());
    let stderr = Tail::collect(handler.child.stderr.take());
    let feed = async move {
        if let Some(mut input) = input {
            // A handler that does not read its input closes the pipe: not an error.
            let _ = input.write_all(stdin.as_bytes()).await;
        }
    };
    let outcome = match tokio::time::timeout(config.timeout, handler.wait_feeding(feed)).await {
        Ok(Ok(status)) => Outcome::Exited(status),
        Ok(Err(e)) => Outcome::WaitFailed(e),
        Err(_) => {
            handler.kill().await;
            Outcome::TimedOut
        }
    };
    let (out, err) = tokio::join!(stdout.finish(), stderr.finish());
    outcome.report(config, stats, event, begun.elapsed(), &out, &err);
}

/// Spawns the handler; a spawn that failed for want of descriptors, memory or processes is
/// retried with backoff until it succeeds, so that no run is lost to a passing shortage.
async fn spawn_retrying(
    config: &HookConfig,
    stats: &HookStats,
    event: &HookEvent,
    cmd: &str,
) -> Option<Handler> {
    let mut delay = SPAWN_RETRY_MIN;
    let mut warn = RateLimited::new(Duration::from_secs(10));
    loop {
        match Handler::spawn(command(config, event, cmd)) {
            Ok(h) => return Some(h),
            Err(e) if is_transient(&e) => {
                stats.spawn_retries.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = warn.allow() {
                    tracing::warn!(event = event.kind, node = %event.node, suppressed, "cannot start the --on-change command yet: {e}; retrying");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(SPAWN_RETRY_MAX);
            }
            Err(e) => {
                stats.runs_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(event = event.kind, node = %event.node, "cannot run the --on-change command: {e}");
                return None;
            }
        }
    }
}

/// Whether a spawn error may pass by itself: out of descriptors (`EMFILE`, `ENFILE`),
/// processes (`EAGAIN`) or memory (`ENOMEM`).
fn is_transient(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        matches!(
            Errno::from_io_error(e),
            Some(Errno::MFILE | Errno::NFILE | Errno::AGAIN | Errno::NOMEM)
        )
    }
    #[cfg(not(unix))]
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::OutOfMemory
    )
}

/// `sh -c CMD` with the event in its environment and piped standard streams; with
/// [`HookConfig::open_files`], a shell that lowers its soft limit first and then becomes
/// `sh -c CMD`.
fn command(config: &HookConfig, event: &HookEvent, cmd: &str) -> Command {
    let mut command = Command::new("sh");
    match config.open_files {
        Some(limit) => command
            .arg("-c")
            .arg(r#"ulimit -S -n "$0" 2>/dev/null; exec sh -c "$1""#)
            .arg(limit.to_string())
            .arg(cmd),
        None => command.arg("-c").arg(cmd),
    };
    command
        .env("AUTOCLUSTER_EVENT", event.kind)
        .env("AUTOCLUSTER_NODE", event.node.as_str())
        .env("AUTOCLUSTER_INCARNATION", event.incarnation.to_string())
        .env("AUTOCLUSTER_CLUSTER", &config.cluster)
        .env("AUTOCLUSTER_SELF", config.self_node.as_str())
        .env("AUTOCLUSTER_MEMBER", &event.member)
        .env("AUTOCLUSTER_LABELS", &event.labels)
        .env("AUTOCLUSTER_ENDPOINTS", &event.endpoints)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match event.reason {
        Some(reason) => command.env("AUTOCLUSTER_REASON", reason),
        None => command.env_remove("AUTOCLUSTER_REASON"),
    };
    match &event.foreign_cluster_id {
        Some(id) => command.env("AUTOCLUSTER_FOREIGN_CLUSTER_ID", id),
        None => command.env_remove("AUTOCLUSTER_FOREIGN_CLUSTER_ID"),
    };
    let formation = config.formation.as_ref().and_then(|f| f.borrow().clone());
    match formation {
        Some(f) => command
            .env("AUTOCLUSTER_FORMATION", f.role.as_str())
            .env("AUTOCLUSTER_FORMATION_TARGET", f.target.as_str())
            .env("AUTOCLUSTER_CLUSTER_ID", &f.cluster_id),
        None => command
            .env_remove("AUTOCLUSTER_FORMATION")
            .env_remove("AUTOCLUSTER_FORMATION_TARGET")
            .env_remove("AUTOCLUSTER_CLUSTER_ID"),
    };
    command
}

enum Outcome {
    Exited(ExitStatus),
    TimedOut,
    WaitFailed(std::io::Error),
}

impl Outcome {
    fn report(
        &self,
        config: &HookConfig,
        stats: &HookStats,
        event: &HookEvent,
        elapsed: Duration,
        out: &str,
        err: &str,
    ) {
        let (kind, node) = (event.kind, &event.node);
        match self {
            Outcome::Exited(status) if status.success() => {
                stats.runs_ok.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(event = kind, node = %node, ?elapsed, stdout = %out.trim_end(), "--on-change handler done");
            }
            Outcome::Exited(status) => {
                stats.runs_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(event = kind, node = %node, %status, "the --on-change handler failed ({status}); stderr: {}", one_line(err));
            }
            Outcome::TimedOut => {
                stats.runs_timed_out.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    event = kind,
                    node = %node,
                    "the --on-change handler did not finish within {:?} (--hook-timeout) and was killed; stderr: {}",
                    config.timeout,
                    one_line(err)
                );
            }
            Outcome::WaitFailed(e) => {
                stats.runs_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(event = kind, node = %node, "waiting for the --on-change handler failed: {e}");
            }
        }
    }
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

    /// Waits for the shell to exit while `feed` writes its input; the input is given up
    /// once the shell exited (a process it left behind may hold the pipe without reading).
    async fn wait_feeding(
        &mut self,
        feed: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<ExitStatus> {
        tokio::pin!(feed);
        let mut fed = false;
        let status = loop {
            tokio::select! {
                () = &mut feed, if !fed => fed = true,
                status = self.child.wait() => break status,
            }
        };
        self.exited = status.is_ok();
        status
    }

    /// Kills the process group (the shell and whatever it started) and reaps the shell.
    async fn kill(&mut self) {
        self.kill_group();
        let _ = self.child.start_kill();
        if let Ok(Ok(_)) = tokio::time::timeout(REAP_GRACE, self.child.wait()).await {
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
    fn stderr_is_shown_on_one_line() {
        assert_eq!(one_line("a\nb\n"), "a | b");
        assert_eq!(one_line(""), "(empty)");
    }

    #[cfg(unix)]
    #[test]
    fn running_out_of_descriptors_or_processes_is_transient() {
        let errno = |n| std::io::Error::from_raw_os_error(n);
        let code = |e: rustix::io::Errno| e.raw_os_error();
        use rustix::io::Errno;
        assert!(is_transient(&errno(code(Errno::MFILE))));
        assert!(is_transient(&errno(code(Errno::NFILE))));
        assert!(is_transient(&errno(code(Errno::AGAIN))));
        assert!(!is_transient(&errno(code(Errno::NOENT))));
    }
}

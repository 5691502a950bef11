//! `--members-file PATH`: the running members, one node name a line, sorted (or, with
//! `--members-file-format json`, a JSON array of them with their metadata), rewritten
//! atomically whenever that changes; a write that fails is retried until it succeeds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use autocluster::View;
use tokio::sync::watch;

use super::HookStats;
use crate::limits::RateLimited;

/// How long to wait before writing the members file again after a failed write.
const WRITE_RETRY: Duration = Duration::from_secs(1);

/// Rewrites `path` whenever the set of running members changes, until the view's sender
/// goes (the cluster stopped).
pub async fn keep_members_file(
    path: PathBuf,
    json: bool,
    mut view: watch::Receiver<View>,
    stats: Arc<HookStats>,
) {
    let mut written: Option<Vec<String>> = Some(if json {
        vec!["[]".to_string()]
    } else {
        Vec::new()
    });
    let mut warn = RateLimited::new(Duration::from_secs(10));
    loop {
        let running = if json {
            vec![running_members_json(&view.borrow_and_update())]
        } else {
            running_members(&view.borrow_and_update())
        };
        let mut failed = false;
        if written.as_ref() != Some(&running) {
            let (p, lines) = (path.clone(), running.clone());
            let result = tokio::task::spawn_blocking(move || write_atomically(&p, &lines)).await;
            match result.map_err(std::io::Error::other).and_then(|r| r) {
                Ok(()) => {
                    tracing::debug!(path = %path.display(), members = running.len(), "members file written");
                    written = Some(running);
                }
                Err(e) => {
                    stats.members_file_failures.fetch_add(1, Ordering::Relaxed);
                    if let Some(suppressed) = warn.allow() {
                        tracing::warn!(path = %path.display(), suppressed, "cannot write the members file: {e}; trying again every {WRITE_RETRY:?}");
                    }
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
pub fn running_members(view: &View) -> Vec<String> {
    let mut names: Vec<String> = view.running_nodes().iter().map(|n| n.to_string()).collect();
    names.sort();
    names
}

/// The running members as a JSON array, as `/members` shows them (JSON escapes whatever a
/// peer registered).
pub fn running_members_json(view: &View) -> String {
    let running: Vec<&autocluster::MemberEntry> = view
        .members()
        .filter(|e| e.status == autocluster::Status::Running)
        .collect();
    serde_json::to_string(&running).unwrap_or_else(|_| "[]".into())
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
}

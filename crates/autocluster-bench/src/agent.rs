//! `autocluster agent` processes: the real binary, whose memory the bench reads.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::probes::{BoxError, PREFIX};

/// The `autocluster` binary next to this one, if it was built.
pub fn default_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("autocluster");
    p.is_file().then_some(p)
}

/// An `autocluster agent` process in a cluster.
pub struct Agent {
    child: Child,
    /// Its configuration and log.
    dir: tempfile::TempDir,
}

impl Agent {
    /// Starts `bin agent` as node `name@127.0.0.1` of `cluster`, with `node_ttl`.
    pub fn start(
        bin: &Path,
        endpoint: &str,
        cluster: &str,
        name: &str,
        node_ttl: Duration,
    ) -> Result<Agent, BoxError> {
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("node.conf");
        std::fs::write(
            &conf,
            format!(
                "node.name = {name}@127.0.0.1\nnode.cookie = benchcookie\n\
                 cluster.name = {cluster}\ncluster.discovery = etcd\n\
                 cluster.etcd.server = {endpoint}\ncluster.etcd.prefix = {PREFIX}\n\
                 cluster.etcd.node_ttl = {}s\n",
                node_ttl.as_secs()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("agent.log"))?;
        let child = Command::new(bin)
            .arg("agent")
            .arg("-c")
            .arg(&conf)
            .args(["--admin", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Agent { child, dir })
    }

    /// If the agent has exited: its exit status and the last line of its log (why).
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok()??;
        let log = std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default();
        let last = log
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Some(format!("{status}: {}", last.trim()))
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Stops it as an operator would (SIGTERM: it leaves cleanly), killed after 10 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

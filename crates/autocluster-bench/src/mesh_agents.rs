//! The agents of the mesh run: real `autocluster agent` processes, each with its own
//! configuration, log and admin port (fixed, from `--admin-base` up, outside the ephemeral
//! range so that no outgoing connection takes one first).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::probes::BoxError;

/// The etcd key prefix of the mesh cluster.
pub const MESH_PREFIX: &str = "mesh";
/// The mesh cluster's name.
pub const MESH_CLUSTER: &str = "mesh";

/// One running agent.
pub struct MeshAgent {
    child: Child,
    /// Its admin endpoint.
    pub admin: SocketAddr,
    /// Its log file.
    pub log: PathBuf,
}

impl MeshAgent {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks it to leave cleanly (SIGTERM: it revokes its lease).
    pub fn terminate(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }

    /// Whether it has exited, and the last line of its log if so.
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok()??;
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let last = log.lines().rev().find(|l| !l.trim().is_empty());
        Some(format!("{status}: {}", last.unwrap_or("").trim()))
    }
}

impl Drop for MeshAgent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How the agents are started.
pub struct Spawn<'a> {
    pub bin: &'a Path,
    /// The etcd endpoint of agent `i` is `endpoints[i % len]` (etcd, or the proxies).
    pub endpoints: &'a [String],
    pub node_ttl: Duration,
    pub admin_base: u16,
    pub dir: &'a Path,
    /// The agents' niceness (0: as the harness's own).
    pub nice: i32,
}

impl Spawn<'_> {
    /// Starts agent `i`, node `m<i>@127.0.0.1`.
    pub fn start(&self, i: usize) -> Result<MeshAgent, BoxError> {
        let port = u16::try_from(usize::from(self.admin_base) + i)
            .map_err(|_| format!("--admin-base {} + {i} is not a port", self.admin_base))?;
        let admin = SocketAddr::from(([127, 0, 0, 1], port));
        let endpoint = &self.endpoints[i % self.endpoints.len()];
        let conf = self.dir.join(format!("m{i:05}.conf"));
        std::fs::write(
            &conf,
            format!(
                "node.name = m{i:05}@127.0.0.1\nnode.cookie = meshbenchcookie\n\
                 cluster.name = {MESH_CLUSTER}\ncluster.discovery = etcd\n\
                 cluster.etcd.server = {endpoint}\ncluster.etcd.prefix = {MESH_PREFIX}\n\
                 cluster.etcd.node_ttl = {}s\n",
                self.node_ttl.as_secs()
            ),
        )?;
        let log = self.dir.join(format!("m{i:05}.log"));
        let err = std::fs::File::create(&log)?;
        let mut cmd = if self.nice == 0 {
            Command::new(self.bin)
        } else {
            // `nice` execs the agent: the child's pid is the agent's.
            let mut c = Command::new("nice");
            c.arg("-n").arg(self.nice.to_string()).arg(self.bin);
            c
        };
        let child = cmd
            .arg("agent")
            .arg("-c")
            .arg(&conf)
            .args(["--admin", &admin.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        Ok(MeshAgent { child, admin, log })
    }
}

/// Raises this process's open-file limit to its hard limit (etcd, started by us, inherits
/// it: it holds a connection per agent); returns the soft limit now.
pub fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: maximum,
        maximum,
    };
    if current != maximum && setrlimit(Resource::Nofile, raised).is_ok() {
        return maximum.unwrap_or(u64::MAX);
    }
    current.unwrap_or(u64::MAX)
}

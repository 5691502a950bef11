//! The history of one nemesis run: one JSON object a line, each with `t_ms` (milliseconds
//! since the run started, on the harness's monotonic clock) and a `kind`.
//!
//! ```text
//! {"t_ms":0,"kind":"start","seed":7,"backend":"etcd","node_ttl_ms":3000,...}
//! {"t_ms":5120,"kind":"fault","fault":"kill_agent","scope":"agent","target":"n2@127.0.0.1"}
//! {"t_ms":5121,"kind":"state","agents":[{"name":"n2@127.0.0.1","live":false,...}],"etcd_calm":true}
//! {"t_ms":8210,"kind":"event","observer":"n1@127.0.0.1","event":"left","node":"n2@127.0.0.1","incarnation":"694d..."}
//! {"t_ms":9000,"kind":"heal","what":"all","scope":"all","target":null}
//! {"t_ms":9800,"kind":"truth","heal_ms":9000,"members":{"n1@127.0.0.1":"694d...",...}}
//! ```
//!
//! The checker ([`super::checker`]) reads nothing else: whatever it proves, it proves from
//! this file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A member map, node name to incarnation (hex, as the agent prints it).
pub type Members = BTreeMap<String, String>;

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Milliseconds since the run started.
    pub t_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub record: Record,
}

/// What the harness knows of one agent at a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// Its `node.name`.
    pub name: String,
    /// Its process runs (started, not killed, not left).
    pub live: bool,
    /// Stopped with SIGSTOP.
    pub paused: bool,
    /// Its way to etcd (or to the multicast group) is open.
    pub connected: bool,
}

impl AgentState {
    /// Live, running and connected: nothing excuses it from any property.
    pub fn healthy(&self) -> bool {
        self.live && !self.paused && self.connected
    }
}

/// The kinds of line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Record {
    /// The first line: what reproduces the run and the bounds the checker holds it to.
    Start {
        /// The seed of the fault schedule.
        seed: u64,
        /// `etcd` or `mcast`.
        backend: String,
        /// Every agent's name.
        agents: Vec<String>,
        /// `node_ttl` of every agent.
        node_ttl_ms: u64,
        /// `cluster.grace` (the backend's TTL when unset).
        grace_ms: u64,
        /// The oldest view an agent may answer ready with (docs/operations.md).
        fresh_bound_ms: u64,
    },
    /// A fault injected. `scope` is `agent` (one agent), `etcd` (the servers) or `data`
    /// (what is stored: compaction, garbage, large values).
    Fault {
        /// Its kind, such as `kill_agent`, `pause_agent`, `kill_leader`.
        fault: String,
        /// `agent`, `etcd` or `data`.
        scope: String,
        /// The agent or etcd member it hit, if one.
        target: Option<String>,
    },
    /// A fault healed; `what` = `all` is the end of a round, when everything is healed.
    Heal {
        /// The fault it ends (`restart_agent`, `resume_agent`, ...) or `all`.
        what: String,
        /// As in [`Record::Fault`]; `all` for the end of a round.
        scope: String,
        /// The agent or etcd member, if one.
        target: Option<String>,
    },
    /// The harness's truth after a change.
    State {
        /// Every agent.
        agents: Vec<AgentState>,
        /// No fault of the servers is in effect.
        etcd_calm: bool,
    },
    /// An agent's event stream (re)started: what it streams from here on is one life.
    Subscribed {
        /// The agent.
        observer: String,
    },
    /// One event from an agent's stream.
    Event {
        /// The agent that saw it.
        observer: String,
        /// `joined`, `left` or `updated`.
        event: String,
        /// The node it is about.
        node: String,
        /// The member's incarnation in the event.
        incarnation: String,
        /// Why it left, when it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An agent's `/health/ready` changed (or did not answer: `ready` false).
    Ready {
        /// The agent.
        agent: String,
        /// 200 from `/health/ready`.
        ready: bool,
    },
    /// After a round's heal: every agent live and ready, with its own incarnation.
    Truth {
        /// When the round's heal was done.
        heal_ms: u64,
        /// The live set.
        members: Members,
    },
    /// An agent's running members changed, as its `/status` said.
    View {
        /// The agent.
        observer: String,
        /// Its running members.
        members: Members,
    },
    /// The node keys under the prefix, with their lease (hex), read after a round.
    EtcdKeys {
        /// Node name to lease.
        keys: Members,
    },
    /// The last line.
    End,
}

/// Writes a history; cheap to clone, shared by the harness's threads and tasks.
#[derive(Clone)]
pub struct HistoryWriter {
    out: Arc<Mutex<BufWriter<File>>>,
    started: Instant,
}

impl HistoryWriter {
    /// Creates (truncates) `path`; times count from now.
    pub fn create(path: &Path) -> io::Result<HistoryWriter> {
        Ok(HistoryWriter {
            out: Arc::new(Mutex::new(BufWriter::new(File::create(path)?))),
            started: Instant::now(),
        })
    }

    /// Milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Appends `record` stamped now, and returns the stamp.
    pub fn write(&self, record: Record) -> u64 {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // Stamped under the lock, so the lines are in time order.
        let t_ms = self.now_ms();
        let line = serde_json::to_string(&Entry { t_ms, record }).expect("a record serializes");
        let _ = writeln!(out, "{line}");
        t_ms
    }

    /// Writes buffered lines to the file.
    pub fn flush(&self) -> io::Result<()> {
        self.out.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

/// Reads a history file; an unreadable line is an error naming its number.
pub fn read(path: &Path) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for (i, line) in BufReader::new(File::open(path)?).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let entry = serde_json::from_str(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}:{}: not a history line: {e}", path.display(), i + 1),
            )
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

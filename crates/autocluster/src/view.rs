//! What readers see: the current view, the events that change it, and the engine's health.

use std::sync::Arc;
use std::time::SystemTime;

use autocluster_plugin::{ErrorKind, Incarnation, Member, NodeName, Revision};
use serde::{Deserialize, Serialize};

/// Whether a member runs.
///
/// Members of backends that register (etcd, multicast) are running while registered. Members
/// of backends that only list candidates (static seeds, DNS) are running once the liveness
/// probe has proved them, stopped otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Registered, or answered the probe as the expected node.
    Running,
    /// Listed but not answering (or not yet probed).
    Stopped,
}

/// One entry of the view. In JSON (`/members`, `/status`), the member's fields with
/// `status`, `since` (milliseconds since the Unix epoch) and `vanishing` beside them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEntry {
    /// The member as the backend reports it.
    #[serde(flatten)]
    pub member: Member,
    /// Running or stopped.
    pub status: Status,
    /// When the member entered the view.
    #[serde(with = "ms")]
    pub since: SystemTime,
    /// When the backend stopped listing it after a resync, the member is kept for the grace
    /// period and marked `vanishing` (an etcd wipe: it will come back).
    pub vanishing: bool,
}

/// The membership as this node sees it now. Cloning is cheap (a persistent map).
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Entries behind an `Arc`: a change copies the map's path to the entry (pointers),
    /// not the neighbouring entries, which every published view shares.
    pub(crate) members: imbl::OrdMap<NodeName, Arc<MemberEntry>>,
    /// The backend revision the view reflects.
    pub revision: Revision,
    /// True while the backend cannot be read (the view is the last known one), or before the
    /// first snapshot.
    pub stale: bool,
    /// True once a first snapshot was read.
    pub synced: bool,
}

impl View {
    /// Every member, ordered by node name.
    pub fn members(&self) -> impl Iterator<Item = &MemberEntry> + '_ {
        self.members.values().map(|e| &**e)
    }

    /// The entry of `node`.
    pub fn get(&self, node: &NodeName) -> Option<&MemberEntry> {
        self.members.get(node).map(|e| &**e)
    }

    /// Whether `node` is in the view and running.
    pub fn is_running(&self, node: &NodeName) -> bool {
        self.members
            .get(node)
            .is_some_and(|e| e.status == Status::Running)
    }

    /// How many members (running or stopped).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The running nodes, ordered.
    pub fn running_nodes(&self) -> Vec<NodeName> {
        self.nodes_with(Status::Running)
    }

    /// The listed nodes that do not run, ordered.
    pub fn stopped_nodes(&self) -> Vec<NodeName> {
        self.nodes_with(Status::Stopped)
    }

    fn nodes_with(&self, status: Status) -> Vec<NodeName> {
        self.members
            .values()
            .filter(|e| e.status == status)
            .map(|e| e.member.node.clone())
            .collect()
    }

    /// The oldest running member: the lowest creation revision, ties broken by name. This is
    /// the natural seed a new node joins.
    pub fn oldest(&self) -> Option<&MemberEntry> {
        self.members()
            .filter(|e| e.status == Status::Running)
            .min_by(|a, b| {
                (a.member.created, &a.member.node).cmp(&(b.member.created, &b.member.node))
            })
    }

    /// EMQX's one-line form:
    /// `Cluster status: [{running_nodes,['a@h','b@h']}]`, with
    /// `,{stopped_nodes,[...]}` before the final `]` when some listed node does not run.
    pub fn emqx_status_line(&self) -> String {
        emqx_status_line(&self.running_nodes(), &self.stopped_nodes())
    }
}

/// EMQX's one-line cluster status of `running` and `stopped` nodes (see
/// [`View::emqx_status_line`]); the one place the line is written.
pub(crate) fn emqx_status_line(running: &[NodeName], stopped: &[NodeName]) -> String {
    let list = |nodes: &[NodeName]| {
        nodes
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut s = format!("Cluster status: [{{running_nodes,[{}]}}", list(running));
    if !stopped.is_empty() {
        s.push_str(&format!(",{{stopped_nodes,[{}]}}", list(stopped)));
    }
    s.push(']');
    s
}

/// What happened to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A member started running (registered, or answered its first probe).
    Joined,
    /// A member stopped running.
    Left,
    /// A running member changed: new metadata, or a new incarnation inside the grace period.
    Updated,
}

impl EventKind {
    /// `joined`, `left` or `updated`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Joined => "joined",
            EventKind::Left => "left",
            EventKind::Updated => "updated",
        }
    }
}

/// Why a member left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    /// Its registration was deleted: a clean leave, or its lease expired on the server.
    Deregistered,
    /// Not heard from within its TTL (multicast).
    Expired,
    /// The backend stopped listing it and it did not come back within the grace period.
    Vanished,
    /// It stopped answering the liveness probe.
    Stopped,
    /// A new life of the node replaced this one.
    Restarted,
}

/// One change of the view, as subscribers receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Event {
    /// Joined, left or updated.
    #[serde(rename = "event")]
    pub kind: EventKind,
    /// The node.
    pub node: NodeName,
    /// The member after the change (for `Left`: as it was last seen).
    pub member: Member,
    /// The member before the change, for `Updated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<Member>,
    /// Why, for `Left`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<LeftReason>,
    /// The backend revision of the change.
    pub revision: Revision,
    /// When this node saw it.
    #[serde(with = "ms", rename = "at_ms")]
    pub at: SystemTime,
}

impl Event {
    /// The `Joined` event of a member already in a view (at `revision`), as a subscriber that
    /// starts from that view tells it.
    pub fn joined(entry: &MemberEntry, revision: Revision) -> Event {
        Event {
            kind: EventKind::Joined,
            node: entry.member.node.clone(),
            member: entry.member.clone(),
            previous: None,
            reason: None,
            revision,
            at: entry.since,
        }
    }
}

/// The engine's health, for readiness probes and `status`. Its JSON form is what the
/// agent's `/health/ready` answers, and it reads back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Health {
    /// The backend's name.
    pub backend: String,
    /// Whether this node's registration is in place (always true for backends without one).
    pub registered: bool,
    /// The incarnation of the current registration (a hex string in JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<Incarnation>,
    /// Whether the view is the last known one rather than a live one.
    pub stale: bool,
    /// Whether a first snapshot was read.
    pub synced: bool,
    /// Whether this node sees its own registration in its view (always true for backends
    /// without registration).
    pub in_view: bool,
    /// When a backend call last succeeded.
    #[serde(default, with = "opt_ms", skip_serializing_if = "Option::is_none")]
    pub last_success: Option<SystemTime>,
    /// The last error, with when it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The kind of the last error (`"unavailable"`, `"tls"`, ... in JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_kind: Option<ErrorKind>,
    /// When the last error happened.
    #[serde(default, with = "opt_ms", skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<SystemTime>,
    /// Backend calls that failed in a row, across registration and view.
    pub consecutive_failures: u64,
    /// Why the engine stopped on its own (the backend refused this node for good, or a task
    /// panicked or ended): the node has left, its view no longer changes, and it is never
    /// ready again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// The kind of the backend's error that failed the engine (`"config"`, `"conflict"`:
    /// another live node holds this node's name); none when a task died.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_kind: Option<ErrorKind>,
}

impl Health {
    /// Ready: registered, seen in its own view, synced, the view is fresh, and the engine
    /// has not failed.
    pub fn is_ready(&self) -> bool {
        self.not_ready_because().is_none()
    }

    /// Why the node is not ready, in words, or `None` when it is.
    pub fn not_ready_because(&self) -> Option<String> {
        if let Some(why) = &self.failed {
            return Some(format!("failed: {why}"));
        }
        let why = if !self.registered {
            "not registered"
        } else if !self.synced {
            "syncing: no snapshot read yet"
        } else if self.stale {
            "stale: the backend is not being read live"
        } else if !self.in_view {
            "syncing: this node does not see itself in its view yet"
        } else {
            return None;
        };
        Some(why.to_string())
    }
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `SystemTime` as milliseconds since the Unix epoch, both ways.
mod ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::unix_ms(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        from_ms(u64::deserialize(d)?)
    }

    /// The time `ms` after the epoch; an error past what `SystemTime` holds.
    pub fn from_ms<E: serde::de::Error>(ms: u64) -> Result<SystemTime, E> {
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(|| E::custom(format!("{ms} ms since the Unix epoch is out of range")))
    }
}

/// `Option<SystemTime>` as milliseconds since the Unix epoch, both ways.
pub(crate) mod opt_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_u64(super::unix_ms(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        Option::<u64>::deserialize(d)?
            .map(super::ms::from_ms)
            .transpose()
    }
}

//! Members, their metadata, and the snapshots and changes backends report.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::NodeName;

/// Which life of a node a member is: a lease id (etcd), or a start time (multicast).
///
/// A node that restarts, or registers again after losing its lease, has a new incarnation, so
/// the engine reports it as a new member (`Left` then `Joined`, or `Updated` inside a grace
/// period) and never confuses a stale message about the old life with the new one.
///
/// In JSON it is a hex string (`"694f2a1c9e3b4d01"`, as `Display` prints it): lease ids exceed
/// the 2^53 that JavaScript and `jq` numbers hold exactly. Numbers are accepted on input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Incarnation(pub u64);

impl Serialize for Incarnation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:x}", self.0))
    }
}

impl<'de> Deserialize<'de> for Incarnation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Hex(String),
            Num(u64),
        }
        match Repr::deserialize(d)? {
            Repr::Num(n) => Ok(Incarnation(n)),
            Repr::Hex(h) => u64::from_str_radix(&h, 16)
                .map(Incarnation)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// A backend's position in its history (etcd's revision, a poll counter). `0` is "none yet".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Revision(pub u64);

/// What a node says about itself, stored as JSON in its registration.
///
/// Every field is optional: a key written by EMQX 4.x itself has an empty value and is read as
/// a member without metadata (`Member::meta` is `None`). Built from [`Metadata::default`] or
/// [`Metadata::of`] and the `with_` methods, so a field added later breaks nobody.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// The node's name, repeated so a value read on its own is self-describing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeName>,
    /// Addresses the node advertises (`127.0.0.11:4370`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
    /// The software version the node runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When the node started, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    /// Free-form labels an application adds (`role = core`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Named endpoints the node serves (`mqtt = 10.0.0.5:1883`), `host:port` each.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, String>,
    /// The id of the cluster this node formed or joined (see `docs/formation.md`); `None`
    /// before formation. Two members of one `cluster.name` with different ids are two
    /// clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

impl Metadata {
    /// The metadata of `node`: its name and nothing else yet.
    pub fn of(node: NodeName) -> Self {
        Metadata {
            node: Some(node),
            ..Metadata::default()
        }
    }

    /// With the addresses the node advertises.
    pub fn with_addrs(mut self, addrs: Vec<String>) -> Self {
        self.addrs = addrs;
        self
    }

    /// With the software version the node runs.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// With the node's start time, in milliseconds since the Unix epoch.
    pub fn with_started_at_ms(mut self, ms: u64) -> Self {
        self.started_at_ms = Some(ms);
        self
    }

    /// With the id of the cluster this node formed or joined.
    pub fn with_cluster_id(mut self, id: impl Into<String>) -> Self {
        self.cluster_id = Some(id.into());
        self
    }

    /// With one more label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// With one more named endpoint (`grpc`, `10.0.0.5:50051`).
    pub fn with_endpoint(mut self, name: impl Into<String>, addr: impl Into<String>) -> Self {
        self.endpoints.insert(name.into(), addr.into());
        self
    }
}

/// One member as a backend sees it.
///
/// Built with [`Member::new`] (or [`Member::bare`]) and the `with_` methods, so a field added
/// later breaks no backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Member {
    /// The node's name.
    pub node: NodeName,
    /// Which life of the node this is.
    pub incarnation: Incarnation,
    /// The node's metadata; `None` for a registration without any (EMQX's own keys, a
    /// static seed, a DNS record).
    pub meta: Option<Metadata>,
    /// For backends without a server-side lease (multicast): how long the member stays
    /// without being heard from again; the engine expires it after that.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_ms")]
    pub ttl: Option<Duration>,
    /// The revision at which this registration was created; the lowest is the oldest member.
    #[serde(default)]
    pub created: Revision,
}

impl Member {
    /// A member with no metadata, incarnation 0 and no TTL: a seed or a DNS answer.
    pub fn bare(node: NodeName) -> Self {
        Member::new(node, Incarnation(0))
    }

    /// `node` in its life `incarnation`, with no metadata, no TTL and creation revision 0.
    pub fn new(node: NodeName, incarnation: Incarnation) -> Self {
        Member {
            node,
            incarnation,
            meta: None,
            ttl: None,
            created: Revision(0),
        }
    }

    /// With metadata (`None`: a registration without any).
    pub fn with_meta(mut self, meta: Option<Metadata>) -> Self {
        self.meta = meta;
        self
    }

    /// With a TTL: the engine expires the member when it is not heard from within it.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// With the revision at which the registration was created.
    pub fn with_created(mut self, created: Revision) -> Self {
        self.created = created;
        self
    }
}

mod opt_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_millis() as u64),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// Every member at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The members.
    pub members: Vec<Member>,
    /// The revision the snapshot was read at; a watch resumes after it.
    pub revision: Revision,
}

/// One change a backend pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A member registered, refreshed or changed its metadata.
    Put(Member),
    /// A member's registration is gone (deleted, lease expired, clean leave).
    Delete {
        /// The node that is gone.
        node: NodeName,
        /// When known, which life of the node is gone; a delete for another incarnation
        /// than the current one is ignored (a late leave of an earlier life).
        incarnation: Option<Incarnation>,
    },
}

impl Change {
    /// The node the change is about.
    pub fn node(&self) -> &NodeName {
        match self {
            Change::Put(m) => &m.node,
            Change::Delete { node, .. } => node,
        }
    }
}

/// Changes a watch delivers together, all at or before `revision`.
///
/// An empty `changes` is a progress notice: nothing changed up to `revision`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WatchBatch {
    /// The revision of the newest change in the batch (or of the progress notice).
    pub revision: Revision,
    /// The changes, in order.
    pub changes: Vec<Change>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_are_hex_strings_in_json_and_numbers_are_accepted() {
        let big = Incarnation(0x1a15_a20f_91a0_ec05);
        let json = serde_json::to_string(&big).unwrap();
        assert_eq!(json, "\"1a15a20f91a0ec05\"");
        assert_eq!(serde_json::from_str::<Incarnation>(&json).unwrap(), big);
        assert_eq!(
            serde_json::from_str::<Incarnation>("42").unwrap(),
            Incarnation(42)
        );
        assert!(serde_json::from_str::<Incarnation>("\"xyz\"").is_err());
    }
}

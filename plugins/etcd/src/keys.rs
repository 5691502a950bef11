//! The key layout (`/<prefix>/<cluster>/nodes/<node>`), value encoding, and the count of
//! garbage entries skipped while reading.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use autocluster_plugin::log::Escaped;
use autocluster_plugin::{Incarnation, Member, Metadata, NodeName, Revision};

/// The largest value every reader accepts as a registration (64 KiB); a larger one is
/// skipped and counted as an invalid entry. A writer never writes one: metadata is bounded
/// when it is set.
pub const MAX_VALUE: usize = 64 * 1024;

/// Where this cluster's keys live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    cluster: String,
    nodes: String,
    lock: String,
}

impl Layout {
    /// The layout for `prefix` (without slashes around it) and `cluster`.
    pub fn new(prefix: &str, cluster: &str) -> Layout {
        Layout {
            cluster: format!("/{prefix}/{cluster}"),
            nodes: format!("/{prefix}/{cluster}/nodes/"),
            lock: format!("/{prefix}/{cluster}/lock"),
        }
    }

    /// `/<prefix>/<cluster>`, the directory of everything this cluster keeps (v2 watches it
    /// whole).
    pub fn cluster_dir(&self) -> &str {
        &self.cluster
    }

    /// `/<prefix>/<cluster>/clash/<node>`: where a process refused `node`'s name (another
    /// live registration holds it) leaves a short-lived marker, which the holder's watch sees
    /// and logs. Outside `nodes/`, so no reader takes it for a member.
    pub fn clash_key(&self, node: &NodeName) -> String {
        format!("{}/clash/{node}", self.cluster)
    }

    /// `/<prefix>/<cluster>/nodes/`, with the trailing slash: the prefix every node key
    /// has and no other cluster's key has.
    pub fn nodes_prefix(&self) -> &str {
        &self.nodes
    }

    /// `/<prefix>/<cluster>/nodes`, the v2 directory.
    pub fn nodes_dir(&self) -> &str {
        self.nodes.trim_end_matches('/')
    }

    /// `/<prefix>/<cluster>/nodes/<node>`.
    pub fn node_key(&self, node: &NodeName) -> String {
        format!("{}{node}", self.nodes)
    }

    /// `/<prefix>/<cluster>/lock`.
    pub fn lock_name(&self) -> &str {
        &self.lock
    }

    /// The node a key names; `Err` says why the key is not a node key.
    pub fn node_of(&self, key: &[u8]) -> Result<NodeName, String> {
        let key = std::str::from_utf8(key).map_err(|_| "the key is not UTF-8".to_string())?;
        let rest = key
            .strip_prefix(self.nodes.as_str())
            .ok_or_else(|| format!("the key is not under {}", self.nodes))?;
        NodeName::parse(rest).map_err(|e| e.message().to_string())
    }

    /// A member from a key and its value; `Err` says why the entry is garbage.
    pub fn member(
        &self,
        key: &[u8],
        value: &[u8],
        incarnation: u64,
        created: i64,
    ) -> Result<Member, String> {
        let node = self.node_of(key)?;
        let meta = decode_value(&node, value)?;
        Ok(Member::new(node, Incarnation(incarnation))
            .with_meta(meta)
            .with_created(Revision(created.max(0) as u64)))
    }
}

/// The value stored for a registration: the metadata as JSON.
pub fn encode_value(meta: &Metadata) -> Vec<u8> {
    // Serializing plain strings and maps cannot fail.
    serde_json::to_vec(meta).unwrap_or_else(|_| b"{}".to_vec())
}

/// The metadata in a value: `None` for an empty value (a key EMQX 4.x itself writes).
pub fn decode_value(node: &NodeName, value: &[u8]) -> Result<Option<Metadata>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > MAX_VALUE {
        return Err(format!(
            "the value is {} bytes, over the {MAX_VALUE} byte limit",
            value.len()
        ));
    }
    let meta: Metadata = serde_json::from_slice(value)
        .map_err(|e| format!("the value is not registration metadata (JSON): {e}"))?;
    if let Some(n) = &meta.node {
        if n != node {
            return Err(format!("the value names node {n}, not {node}"));
        }
    }
    Ok(Some(meta))
}

/// Counts the entries skipped as garbage and logs each key once.
#[derive(Default)]
pub struct Garbage {
    count: AtomicU64,
    warned: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Garbage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Garbage")
            .field("count", &self.count())
            .finish()
    }
}

/// Keys remembered as already logged; past this many, garbage is still counted but only
/// logged once more.
const MAX_WARNED: usize = 4096;

impl Garbage {
    /// Counts one skipped entry and warns the first time `key` is seen.
    pub fn skip(&self, backend: &str, key: &[u8], why: &str) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let key = String::from_utf8_lossy(key).into_owned();
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.len() >= MAX_WARNED {
            return;
        }
        if warned.insert(key.clone()) {
            if warned.len() == MAX_WARNED {
                tracing::warn!(backend, "too many invalid keys: no longer logging each one");
            }
            let (key, why) = (Escaped::new(&key), Escaped::new(why));
            tracing::warn!(backend, %key, "skipping an invalid entry under the prefix: {why}");
        }
    }

    /// How many entries were skipped.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_with_the_defaults() {
        let l = Layout::new("emqxcl", "emqxcl");
        let n = NodeName::parse("emqx1@192.168.1.162").unwrap();
        assert_eq!(l.node_key(&n), "/emqxcl/emqxcl/nodes/emqx1@192.168.1.162");
        assert_eq!(l.nodes_dir(), "/emqxcl/emqxcl/nodes");
        assert_eq!(l.lock_name(), "/emqxcl/emqxcl/lock");
        assert_eq!(l.cluster_dir(), "/emqxcl/emqxcl");
        assert_eq!(l.clash_key(&n), "/emqxcl/emqxcl/clash/emqx1@192.168.1.162");
        assert!(l.node_of(l.clash_key(&n).as_bytes()).is_err());
        assert_eq!(l.node_of(l.node_key(&n).as_bytes()).unwrap(), n);
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let l = Layout::new("emqxcl", "emqxcl");
        for (k, v) in [
            (&b"/emqxcl/emqxcl/nodes/not-a-node"[..], &b""[..]),
            (b"/emqxcl/emqxcl/nodes/a@h/extra", b""),
            (b"/emqxcl/emqxcl/nodes/\xff@h", b""),
            (b"/emqxcl/emqxcl2/nodes/x@h", b""),
            (b"/emqxcl/emqxcl/nodes/x@h", b"not json"),
            (b"/emqxcl/emqxcl/nodes/x@h", b"{\"node\":\"y@h\"}"),
        ] {
            assert!(
                l.member(k, v, 1, 1).is_err(),
                "{}",
                String::from_utf8_lossy(k)
            );
        }
        let big = vec![b' '; MAX_VALUE + 1];
        assert!(l.member(b"/emqxcl/emqxcl/nodes/x@h", &big, 1, 1).is_err());
    }

    #[test]
    fn empty_value_is_a_member_without_metadata() {
        let l = Layout::new("emqxcl", "emqxcl");
        let m = l.member(b"/emqxcl/emqxcl/nodes/x@h", b"", 7, 3).unwrap();
        assert_eq!(m.meta, None);
        assert_eq!(m.incarnation, Incarnation(7));
        assert_eq!(m.created, Revision(3));
        let meta = Metadata::default().with_version("1");
        let m = l
            .member(b"/emqxcl/emqxcl/nodes/x@h", &encode_value(&meta), 7, 3)
            .unwrap();
        assert_eq!(m.meta, Some(meta));
    }

    #[test]
    fn garbage_counts_every_skip() {
        let g = Garbage::default();
        g.skip("etcd", b"k", "bad");
        g.skip("etcd", b"k", "bad");
        assert_eq!(g.count(), 2);
    }
}

//! What the etcd harness does to the data: reads the node keys, compacts, writes garbage and
//! large values under the prefix and deletes them again. Through `etcdctl`, as an operator
//! would.

use std::io;

use super::agents::hex;
use super::history::Members;
use crate::fixtures::etcd_cluster::EtcdCluster;

/// The node prefix the agents use (`cluster.etcd.prefix = emqxcl`, cluster `emqxcl`).
pub const NODES: &str = "/emqxcl/emqxcl/nodes/";

/// Keys the garbage and large-value faults write (deleted at the end of each round).
const JUNK: [&str; 5] = [
    "garbage-no-at-sign",
    "ghost@127.0.0.1",
    "@",
    "large-1@127.0.0.1",
    "large-2@127.0.0.1",
];

/// A field of `etcdctl -w fields` output: every value of `"name" : value`.
fn fields<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("\"{name}\" : ");
    out.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

/// The keys under [`NODES`], each with its lease (hex).
pub async fn node_keys(etcd: &EtcdCluster) -> io::Result<Members> {
    let out = etcd
        .etcdctl(&["get", "--prefix", NODES, "-w", "fields"])
        .await?;
    let keys = fields(&out, "Key");
    let leases = fields(&out, "Lease");
    if keys.len() != leases.len() {
        return Err(io::Error::other(format!(
            "etcdctl gave {} keys and {} leases",
            keys.len(),
            leases.len()
        )));
    }
    Ok(keys
        .iter()
        .zip(leases)
        .filter_map(|(k, lease)| {
            let name = k.trim_matches('"').strip_prefix(NODES)?.to_string();
            let lease: i64 = lease.trim().parse().ok()?;
            let json = serde_json::Value::from(lease as u64);
            Some((name, hex(&json)))
        })
        .collect())
}

/// Compacts at the current revision.
pub async fn compact(etcd: &EtcdCluster) -> io::Result<()> {
    let out = etcd.etcdctl(&["get", "/", "-w", "fields"]).await?;
    let rev = fields(&out, "Revision")
        .first()
        .map(|r| r.trim().to_string())
        .ok_or_else(|| io::Error::other("no revision from etcdctl"))?;
    match etcd.etcdctl(&["compact", &rev]).await {
        // Nothing written since the last compaction (keep-alives do not move the revision):
        // that revision is compacted already, which is what this fault asked for.
        Err(e)
            if e.to_string()
                .contains("required revision has been compacted") =>
        {
            Ok(())
        }
        other => other.map(|_| ()),
    }
}

/// Keys that are not registrations: a name without `@`, bad JSON under a good name, `@`.
pub async fn garbage(etcd: &EtcdCluster) -> io::Result<()> {
    for (key, value) in [
        (JUNK[0], "{\"node\": 1"),
        (JUNK[1], "not json at all \u{1b}[31m"),
        (JUNK[2], "{}"),
    ] {
        etcd.etcdctl(&["put", &format!("{NODES}{key}"), value])
            .await?;
    }
    Ok(())
}

/// Two values of 100 KB under good names.
pub async fn large_values(etcd: &EtcdCluster) -> io::Result<()> {
    let value = "x".repeat(100 * 1024);
    for key in &JUNK[3..] {
        etcd.etcdctl(&["put", &format!("{NODES}{key}"), &value])
            .await?;
    }
    Ok(())
}

/// Deletes what [`garbage`] and [`large_values`] wrote.
pub async fn clean(etcd: &EtcdCluster) -> io::Result<()> {
    for key in JUNK {
        etcd.etcdctl(&["del", &format!("{NODES}{key}")]).await?;
    }
    Ok(())
}

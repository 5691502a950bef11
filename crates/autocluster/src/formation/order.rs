//! Formation on backends without cluster records (static, DNS, multicast): every node orders
//! the stable set by (name, incarnation) and the first one seeds. Its cluster id is derived
//! from the cluster name and the seed's name and incarnation, so every node that picks the
//! same seed has the same id without asking it; a node that sees members already carrying an
//! id (a cluster formed before it came: multicast carries ids) joins that cluster instead.

use std::collections::BTreeMap;

use autocluster_plugin::{Error, ErrorKind, Member, Result};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::set::{running, Ctx, Waited};
use super::{Formation, Role};
use crate::view::View;

/// Decides by the order of the stable set.
pub(super) async fn decide(ctx: &Ctx<'_>) -> Result<Formation> {
    if let Some(f) = join_seen_settled(ctx, &ctx.view()).await {
        return may_seed(ctx, f);
    }
    // Members carrying a cluster id may be heard of while waiting (static and DNS learn the
    // ids at the first probe of each member): then this node arrived after formation.
    let found = ctx.wait_stable_unless(|v| seen_cluster(ctx, v).map(|_| v.clone()));
    let set = match found.await? {
        Waited::Stable(set) => set,
        Waited::Found(view) => {
            let f = join_seen_settled(ctx, &view)
                .await
                .expect("a cluster was seen");
            return may_seed(ctx, f);
        }
    };
    if let Some(f) = join_seen_settled(ctx, &ctx.view()).await {
        return may_seed(ctx, with_seen(f, &set));
    }
    let first = set
        .iter()
        .min_by(|a, b| (&a.node, a.incarnation).cmp(&(&b.node, b.incarnation)))
        .expect("the set holds this node");
    let id = derived_id(ctx.cluster_name, first);
    let f = if &first.node == ctx.me() {
        if !ctx.cfg.new_cluster {
            return Err(refused(
                ctx,
                "no member of a formed cluster is seen, and this node is the first in order",
            ));
        }
        Formation::new(Role::Seed, first.node.clone(), id, false)
    } else {
        Formation::new(Role::Join, first.node.clone(), id, false)
    };
    Ok(with_seen(f, &set))
}

/// `f`, unless it seeds and `new_cluster = off`.
fn may_seed(ctx: &Ctx<'_>, f: Formation) -> Result<Formation> {
    if f.role == Role::Seed && !ctx.cfg.new_cluster {
        return Err(refused(ctx, "the nodes seen chose this node to seed"));
    }
    Ok(f)
}

fn with_seen(mut f: Formation, set: &[Member]) -> Formation {
    f.seen = set.iter().map(|m| m.node.clone()).collect();
    f
}

/// Members already carrying a cluster id: the cluster most of them are in (ties: the
/// smaller id). Its seed is the member whose derived id it is (peers that decided before
/// this node carry the id of the seed they chose, which may be this node: then it seeds);
/// when no running member derives it (the seed is gone, or the id is etcd's), the first of
/// its members in order is the target. With it, whether the target is the cluster's seed.
fn seen_cluster(ctx: &Ctx<'_>, view: &View) -> Option<(Formation, bool)> {
    let all = running(view, ctx.me());
    let mut by_id: BTreeMap<String, Vec<&Member>> = BTreeMap::new();
    for m in all.iter().filter(|m| &m.node != ctx.me()) {
        if let Some(id) = m.meta.as_ref().and_then(|meta| meta.cluster_id.clone()) {
            by_id.entry(id).or_default().push(m);
        }
    }
    let (id, members) = by_id
        .into_iter()
        .max_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| b.0.cmp(&a.0)))?;
    if let Some(seed) = all.iter().find(|m| derived_id(ctx.cluster_name, m) == id) {
        let role = if &seed.node == ctx.me() {
            Role::Seed
        } else {
            Role::Join
        };
        let f = Formation::new(role, seed.node.clone(), id, role == Role::Join);
        return Some((f, true));
    }
    let target = members
        .iter()
        .min_by(|a, b| (&a.node, a.incarnation).cmp(&(&b.node, b.incarnation)))?;
    Some((
        Formation::new(Role::Join, target.node.clone(), id, true),
        false,
    ))
}

/// The cluster members already carrying a cluster id belong to ([`seen_cluster`]), giving
/// the seed time to be heard of: a node that learns of a formed cluster
/// from one of its members may not have heard the seed yet (static and DNS probe each
/// candidate on its own; a watch may lag the record). Waits for a view in which the seed
/// runs, at most `stable_for` (and never past the deadline); then joins whom it has.
pub(super) async fn join_seen_settled(ctx: &Ctx<'_>, view: &View) -> Option<Formation> {
    let (f, through_seed) = seen_cluster(ctx, view)?;
    if through_seed {
        return Some(f);
    }
    let until = (Instant::now() + ctx.cfg.stable_for).min(ctx.deadline);
    let seed = ctx
        .wait_view_until(until, |v| {
            seen_cluster(ctx, v)
                .and_then(|(g, through)| (through && g.cluster_id == f.cluster_id).then_some(g))
        })
        .await;
    Some(seed.unwrap_or(f))
}

/// The id of the cluster `seed` seeds in `cluster`: 32 hex digits of a SHA-256.
pub(super) fn derived_id(cluster: &str, seed: &Member) -> String {
    let mut h = Sha256::new();
    h.update(b"autocluster formation\0");
    h.update(cluster.as_bytes());
    h.update(b"\0");
    h.update(seed.node.to_string().as_bytes());
    h.update(b"\0");
    h.update(seed.incarnation.0.to_be_bytes());
    hex(&h.finalize()[..16])
}

/// A random cluster id: 32 hex digits.
pub(super) fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex(&b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The error of a node that would have to seed while `cluster.formation.new_cluster = off`.
pub(super) fn refused(ctx: &Ctx<'_>, why: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!(
            "formation: this node ({}) would seed a new cluster, and cluster.formation.new_cluster \
             = off forbids it: {why}; start a node that may seed, or set new_cluster = on for the \
             first formation",
            ctx.me()
        ),
    )
    .with_key("cluster.formation.new_cluster")
}

#[cfg(test)]
mod tests {
    use super::*;
    use autocluster_plugin::{Incarnation, NodeName};

    #[test]
    fn derived_ids_differ_by_seed_and_life_and_agree_otherwise() {
        let a = Member::new(NodeName::parse("a@h").unwrap(), Incarnation(1));
        let a2 = Member::new(NodeName::parse("a@h").unwrap(), Incarnation(2));
        let b = Member::new(NodeName::parse("b@h").unwrap(), Incarnation(1));
        assert_eq!(derived_id("c", &a), derived_id("c", &a.clone()));
        assert_ne!(derived_id("c", &a), derived_id("c", &a2));
        assert_ne!(derived_id("c", &a), derived_id("c", &b));
        assert_ne!(derived_id("c", &a), derived_id("d", &a));
        assert_eq!(derived_id("c", &a).len(), 32);
        assert_ne!(random_id(), random_id());
    }
}

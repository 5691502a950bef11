//! Formation on a backend that keeps cluster records (etcd): the record `formed` holds the
//! cluster id, the seed and when it formed. The oldest node of the stable set (lowest create
//! revision) creates it, only if absent, in one transaction; everyone else, and every node
//! that comes later, joins the cluster the record names.

use autocluster_plugin::{ErrorKind, Incarnation, Member, NodeName, Result};
use serde::{Deserialize, Serialize};
use tokio::time::{sleep_until, Instant};

use super::set::{oldest, running, Ctx};
use super::{Formation, Role};
use crate::view::{unix_ms, View};

/// The record's name: `/<prefix>/<cluster>/formed` on etcd.
pub(super) const RECORD: &str = "formed";

/// What the record holds (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FormedRecord {
    cluster_id: String,
    seed: NodeName,
    seed_incarnation: Incarnation,
    formed_at_ms: u64,
}

/// Whether the backend keeps records: asks for the record once (no I/O on backends without).
pub(super) async fn has_records(ctx: &Ctx<'_>) -> bool {
    let read = ctx.shared.backend.read_record(RECORD);
    !matches!(
        tokio::time::timeout(ctx.shared.config.call_timeout, read).await,
        Ok(Err(e)) if e.kind() == ErrorKind::Unsupported
    )
}

/// Decides by the record: join the cluster it names, or create it.
pub(super) async fn decide(ctx: &Ctx<'_>) -> Result<Formation> {
    loop {
        if let Some(rec) = read(ctx).await? {
            if let Some(f) = join_recorded(ctx, &rec, &ctx.view()) {
                return Ok(f);
            }
        }
        let set = ctx.wait_stable().await?;
        let first = oldest(&set).cloned().expect("the set holds this node");
        if let Some(rec) = read(ctx).await? {
            let f =
                join_recorded(ctx, &rec, &ctx.view()).unwrap_or_else(|| resume(ctx, &rec, &first));
            return Ok(seen(f, &set));
        }
        if !ctx.cfg.new_cluster {
            return Err(super::order::refused(
                ctx,
                "no cluster was formed yet (no record `formed`)",
            ));
        }
        if &first.node == ctx.me() {
            let rec = FormedRecord {
                cluster_id: super::order::random_id(),
                seed: first.node.clone(),
                seed_incarnation: first.incarnation,
                formed_at_ms: unix_ms(std::time::SystemTime::now()),
            };
            let value = serde_json::to_vec(&rec).unwrap_or_default();
            let r = ctx
                .call("create_record", || {
                    ctx.shared.backend.create_record(RECORD, &value)
                })
                .await?;
            if r.created {
                let f = Formation::new(Role::Seed, first.node.clone(), rec.cluster_id, false);
                return Ok(seen(f, &set));
            }
            continue;
        }
        if let Some(rec) = wait_for_record(ctx, &first.node).await? {
            let f =
                join_recorded(ctx, &rec, &ctx.view()).unwrap_or_else(|| resume(ctx, &rec, &first));
            return Ok(seen(f, &set));
        }
        // The oldest node left before it created the record: decide again.
    }
}

fn seen(mut f: Formation, set: &[Member]) -> Formation {
    f.seen = set.iter().map(|m| m.node.clone()).collect();
    f
}

/// Reads the record; one that does not parse is reported and read as absent only if it is
/// empty (anything else is an error: someone else's data under our key).
async fn read(ctx: &Ctx<'_>) -> Result<Option<FormedRecord>> {
    let raw = ctx
        .call("read_record", || ctx.shared.backend.read_record(RECORD))
        .await?;
    let Some(raw) = raw else { return Ok(None) };
    serde_json::from_slice(&raw).map(Some).map_err(|e| {
        autocluster_plugin::Error::new(
            ErrorKind::InvalidData,
            format!(
                "formation: the cluster record `{RECORD}` is not a formation record ({e}); \
                 delete it if no cluster was formed"
            ),
        )
        .with_backend(ctx.shared.backend.name())
        .with_key(RECORD)
    })
}

/// Whether `m` belongs to the recorded cluster: it carries the id, or it is the recorded
/// seed in the life that seeded.
fn belongs(m: &Member, rec: &FormedRecord) -> bool {
    let carries = m.meta.as_ref().and_then(|meta| meta.cluster_id.as_deref())
        == Some(rec.cluster_id.as_str());
    carries || (m.node == rec.seed && m.incarnation == rec.seed_incarnation)
}

/// Join the recorded cluster through a running member of it (the seed first, else the
/// oldest); `None` when none of its members runs.
fn join_recorded(ctx: &Ctx<'_>, rec: &FormedRecord, view: &View) -> Option<Formation> {
    let members: Vec<Member> = running(view, ctx.me())
        .into_iter()
        .filter(|m| &m.node != ctx.me() && belongs(m, rec))
        .collect();
    let target = members
        .iter()
        .find(|m| m.node == rec.seed)
        .or_else(|| oldest(&members))?;
    Some(Formation::new(
        Role::Join,
        target.node.clone(),
        rec.cluster_id.clone(),
        true,
    ))
}

/// No member of the recorded cluster runs (every node restarted): the oldest of the stable
/// set takes the recorded cluster up again, the others join it.
fn resume(ctx: &Ctx<'_>, rec: &FormedRecord, first: &Member) -> Formation {
    let role = if &first.node == ctx.me() {
        Role::Seed
    } else {
        Role::Join
    };
    Formation::new(role, first.node.clone(), rec.cluster_id.clone(), true)
}

/// Waits for the record while `first` (who creates it) runs; `None` when `first` left.
async fn wait_for_record(ctx: &Ctx<'_>, first: &NodeName) -> Result<Option<FormedRecord>> {
    let every = (ctx.cfg.stable_for / 10).clamp(
        std::time::Duration::from_millis(10),
        std::time::Duration::from_millis(250),
    );
    loop {
        if let Some(rec) = read(ctx).await? {
            return Ok(Some(rec));
        }
        if !ctx.view().is_running(first) {
            return Ok(None);
        }
        let next = Instant::now() + every;
        if next >= ctx.deadline {
            return Err(ctx.timed_out(format_args!(
                "waiting for {first}, the oldest node, to create the cluster record `{RECORD}`"
            )));
        }
        sleep_until(next).await;
    }
}

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
    if let Some(f) = join_at_once(ctx).await? {
        return Ok(f);
    }
    let set = ctx.wait_stable().await?;
    let first = oldest(&set).cloned().expect("the set holds this node");
    if let Some(rec) = read(ctx).await? {
        let f = match join_recorded_settled(ctx, &rec).await {
            Some(f) => f,
            None => resume(ctx, &rec, &first),
        };
        return Ok(seen(f, &set));
    }
    if let Some(f) = super::order::join_seen_settled(ctx, &ctx.view()).await {
        return Ok(seen(f, &set));
    }
    if !ctx.cfg.new_cluster {
        return Err(super::order::refused(
            ctx,
            "no cluster was formed yet (no record `formed`)",
        ));
    }
    let f = match create_in_turn(ctx, &set).await? {
        Turn::Created(rec) => Formation::new(Role::Seed, rec.seed, rec.cluster_id, false),
        Turn::Found(rec) => match join_recorded_settled(ctx, &rec).await {
            Some(f) => f,
            None => resume(ctx, &rec, &first),
        },
    };
    Ok(seen(f, &set))
}

/// A node arriving after formation joins without waiting for a stable set: the record
/// names a cluster one of whose members runs, or (the record lost: etcd wiped, or restored
/// from an old backup) running members carry a cluster id.
async fn join_at_once(ctx: &Ctx<'_>) -> Result<Option<Formation>> {
    Ok(match read(ctx).await? {
        Some(rec) => join_recorded_settled(ctx, &rec).await,
        None => super::order::join_seen_settled(ctx, &ctx.view()).await,
    })
}

/// How [`create_in_turn`] ended.
enum Turn {
    /// This node created the record: it seeds.
    Created(FormedRecord),
    /// Another node did.
    Found(FormedRecord),
}

/// Creates the record when this node's turn comes, unless another node did first. The
/// oldest node of the set (lowest create revision) goes at once, the next one `stable_for`
/// later, and so on: a node that does not create it (it may not seed, it crashed, its etcd
/// connection is cut) delays the formation, never blocks it. The transaction makes one of
/// them the seed whatever the timing.
async fn create_in_turn(ctx: &Ctx<'_>, set: &[Member]) -> Result<Turn> {
    let mut order: Vec<&Member> = set.iter().collect();
    order.sort_by(|a, b| (a.created, &a.node).cmp(&(b.created, &b.node)));
    let rank = order.iter().position(|m| &m.node == ctx.me()).unwrap_or(0) as u32;
    let me = order
        .get(rank as usize)
        .map_or_else(|| Member::bare(ctx.me().clone()), |m| (*m).clone());
    let turn = Instant::now() + ctx.cfg.stable_for * rank;
    let every = (ctx.cfg.stable_for / 10).clamp(
        std::time::Duration::from_millis(10),
        std::time::Duration::from_millis(250),
    );
    loop {
        if let Some(rec) = read(ctx).await? {
            return Ok(Turn::Found(rec));
        }
        if Instant::now() >= turn {
            let rec = FormedRecord {
                cluster_id: super::order::random_id(),
                seed: me.node.clone(),
                seed_incarnation: me.incarnation,
                formed_at_ms: unix_ms(std::time::SystemTime::now()),
            };
            let value = serde_json::to_vec(&rec).unwrap_or_default();
            let r = ctx
                .call("create_record", || {
                    ctx.shared.backend.create_record(RECORD, &value)
                })
                .await?;
            if r.created {
                return Ok(Turn::Created(rec));
            }
            continue;
        }
        let next = (Instant::now() + every).min(turn);
        if next >= ctx.deadline {
            return Err(ctx.timed_out(format_args!(
                "waiting for {} to create the cluster record `{RECORD}`",
                order[0].node
            )));
        }
        sleep_until(next).await;
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

/// [`join_recorded`], giving the recorded seed time to appear in the view when another
/// member of its cluster is seen first (the watch may lag the record): at most `stable_for`,
/// never past the deadline; then joins whom it has.
async fn join_recorded_settled(ctx: &Ctx<'_>, rec: &FormedRecord) -> Option<Formation> {
    let f = join_recorded(ctx, rec, &ctx.view())?;
    if f.target == rec.seed {
        return Some(f);
    }
    let until = (Instant::now() + ctx.cfg.stable_for).min(ctx.deadline);
    let through_seed = |v: &View| join_recorded(ctx, rec, v).filter(|g| g.target == rec.seed);
    Some(ctx.wait_view_until(until, through_seed).await.unwrap_or(f))
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

//! Waiting for formation's conditions: this node ready, then at least `min_members` running
//! members whose set (names and incarnations) stays unchanged for `stable_for`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use autocluster_plugin::{Error, ErrorKind, Incarnation, Member, NodeName, Result};
use tokio::time::{sleep_until, Instant};

use super::FormationConfig;
use crate::engine::Shared;
use crate::view::{Status, View};

/// How a wait for a stable set ended.
pub(super) enum Waited<T> {
    /// The set, stable.
    Stable(Vec<Member>),
    /// What was looked for meanwhile.
    Found(T),
}

/// One formation attempt: the engine, the settings, the deadline.
pub(super) struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub cfg: FormationConfig,
    pub cluster_name: &'a str,
    pub deadline: Instant,
}

impl<'a> Ctx<'a> {
    pub fn new(
        shared: &'a Arc<Shared>,
        cfg: FormationConfig,
        cluster_name: &'a str,
        started: Instant,
    ) -> Self {
        let deadline = started + cfg.timeout;
        Ctx {
            shared,
            cfg,
            cluster_name,
            deadline,
        }
    }

    /// This node.
    pub fn me(&self) -> &NodeName {
        &self.shared.config.registration.node
    }

    /// The view now.
    pub fn view(&self) -> View {
        self.shared.view.borrow().clone()
    }

    /// An error of kind `Timeout` that says what formation waited for.
    pub fn timed_out(&self, what: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "formation did not decide within {:?} (cluster.formation.timeout): {what}",
                self.cfg.timeout
            ),
        )
        .with_key("cluster.formation.timeout")
    }

    /// A backend call bounded by `cluster.call_timeout` and by the deadline, retried with
    /// backoff while its error is retryable.
    pub async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let cfg = &self.shared.config;
        let mut backoff = crate::engine::Backoff::new(cfg.backoff_min, cfg.backoff_max);
        loop {
            let e = match tokio::time::timeout(cfg.call_timeout, f()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if !e.is_retryable() => return Err(e),
                Ok(Err(e)) => e,
                Err(_) => Error::new(
                    ErrorKind::Timeout,
                    format!("no answer within {:?}", cfg.call_timeout),
                )
                .with_backend(self.shared.backend.name())
                .with_operation(op),
            };
            let next = Instant::now() + backoff.next_delay();
            if next >= self.deadline {
                return Err(self.timed_out(format_args!("the backend fails: {e}")));
            }
            tracing::debug!("formation: {op} failed, retrying: {e}");
            sleep_until(next).await;
        }
    }

    /// Waits until this node is registered and its view fresh.
    pub async fn wait_ready(&self) -> Result<()> {
        let mut rx = self.shared.health.subscribe();
        let waited = tokio::time::timeout_at(
            self.deadline,
            rx.wait_for(|h| h.is_ready() || h.failed.is_some()),
        )
        .await;
        match waited {
            Ok(Ok(h)) if h.is_ready() => Ok(()),
            Ok(Ok(h)) => Err(Error::new(
                h.failed_kind.unwrap_or(ErrorKind::Other),
                format!(
                    "formation: the node failed: {}",
                    h.failed.clone().unwrap_or_default()
                ),
            )),
            Ok(Err(_)) => Err(Error::new(ErrorKind::Other, "formation: the node stopped")),
            Err(_) => {
                let why = self.shared.health.borrow().not_ready_because();
                Err(self.timed_out(format_args!(
                    "this node never became ready ({})",
                    why.unwrap_or_default()
                )))
            }
        }
    }

    /// Waits until `found` finds something in the view, at most until `until`.
    pub async fn wait_view_until<T>(
        &self,
        until: Instant,
        found: impl Fn(&View) -> Option<T>,
    ) -> Option<T> {
        let mut rx = self.shared.view.subscribe();
        loop {
            if let Some(t) = found(&rx.borrow_and_update()) {
                return Some(t);
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return None },
                _ = sleep_until(until) => return None,
            }
        }
    }

    /// Waits until at least `min_members` run and their set has not changed for
    /// `stable_for`; returns that set, ordered by name.
    pub async fn wait_stable(&self) -> Result<Vec<Member>> {
        match self.wait_stable_unless(|_| None::<()>).await? {
            Waited::Stable(set) => Ok(set),
            Waited::Found(()) => unreachable!("nothing is looked for"),
        }
    }

    /// [`Ctx::wait_stable`], or what `found` finds in a view first (a formed cluster seen
    /// while waiting: a late node then joins it at once).
    pub async fn wait_stable_unless<T>(
        &self,
        found: impl Fn(&View) -> Option<T>,
    ) -> Result<Waited<T>> {
        let mut rx = self.shared.view.subscribe();
        let mut last: Option<Vec<(NodeName, Incarnation)>> = None;
        let mut since = Instant::now();
        loop {
            let view = rx.borrow_and_update().clone();
            if let Some(f) = found(&view) {
                return Ok(Waited::Found(f));
            }
            let members = running(&view, self.me());
            let key: Vec<_> = members
                .iter()
                .map(|m| (m.node.clone(), m.incarnation))
                .collect();
            if view.stale {
                last = None;
                since = Instant::now();
            } else if last.as_ref() != Some(&key) {
                last = Some(key);
                since = Instant::now();
            }
            let enough = last.is_some() && members.len() >= self.cfg.min_members;
            let stable_at = since + self.cfg.stable_for;
            if enough && Instant::now() >= stable_at {
                return Ok(Waited::Stable(members));
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() {
                    return Err(Error::new(ErrorKind::Other, "formation: the node stopped"));
                },
                _ = sleep_until(stable_at), if enough => {}
                _ = sleep_until(self.deadline) => return Err(self.not_enough(&members, &view)),
            }
        }
    }

    fn not_enough(&self, members: &[Member], view: &View) -> Error {
        let names: Vec<String> = members.iter().map(|m| m.node.to_string()).collect();
        let seen = format!(
            "{} of the {} nodes required were seen (cluster.formation.min_members): {}",
            members.len(),
            self.cfg.min_members,
            names.join(", ")
        );
        if view.stale {
            self.timed_out(format_args!("{seen}; the view is stale"))
        } else if members.len() >= self.cfg.min_members {
            self.timed_out(format_args!(
                "{seen}; the set never stayed unchanged for {:?} (cluster.formation.stable_for)",
                self.cfg.stable_for
            ))
        } else {
            self.timed_out(seen)
        }
    }
}

/// The running members of `view`, with this node (as a bare member when the backend does
/// not list it), ordered by name.
pub(super) fn running(view: &View, me: &NodeName) -> Vec<Member> {
    let mut all: BTreeMap<NodeName, Member> = view
        .members()
        .filter(|e| e.status == Status::Running)
        .map(|e| (e.member.node.clone(), e.member.clone()))
        .collect();
    all.entry(me.clone())
        .or_insert_with(|| Member::bare(me.clone()));
    all.into_values().collect()
}

/// The oldest of `members`: the lowest creation revision, ties broken by name.
pub(super) fn oldest(members: &[Member]) -> Option<&Member> {
    members
        .iter()
        .min_by(|a, b| (a.created, &a.node).cmp(&(b.created, &b.node)))
}

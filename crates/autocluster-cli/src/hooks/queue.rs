//! The `--on-change` queue: one handler at a time, in event order, until the cluster's event
//! stream ends; at stop, until a deadline, after which what is left is counted and dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use autocluster::plugin::Incarnation;
use autocluster::{Event, EventKind, Formation, NodeName, View};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::handler::{run_handler, HookEvent};
use super::members_file::running_members;
use super::{HookConfig, HookStats};

/// The queue's inputs.
pub struct Queue {
    pub config: HookConfig,
    pub stats: Arc<HookStats>,
    pub events: broadcast::Receiver<Event>,
    pub view: watch::Receiver<View>,
    /// Set when the agent stops: the queue runs until then, or until the stream ends.
    pub deadline: watch::Receiver<Option<Instant>>,
    /// The formation decision: a `formed` event when it is made.
    pub formation: watch::Receiver<Option<Formation>>,
    /// Members of this cluster's name in another cluster: a `foreign_cluster` event for
    /// each one newly seen.
    pub foreign: crate::formation::ForeignFollow,
}

impl Queue {
    /// Runs a handler for every event, in order, one at a time; for the members already
    /// running when the hooks start, a `joined` each first.
    pub async fn run(mut self) {
        // Members in the view now may have had their `joined` sent before we subscribed, or
        // may have it still to come: run it now, and skip the one that comes later.
        let mut pending: HashMap<NodeName, Incarnation> = HashMap::new();
        let view = self.view.borrow().clone();
        let mut initial: VecDeque<HookEvent> = view
            .members()
            .filter(|e| e.status == autocluster::Status::Running)
            .map(|e| HookEvent::of(&autocluster::Event::joined(e, view.revision)))
            .collect();
        for event in &initial {
            pending.insert(event.node.clone(), event.incarnation);
        }
        let decided = self.formation.borrow_and_update().clone();
        if let Some(f) = decided {
            initial.push_back(HookEvent::formed(&f));
        }
        loop {
            let event = match initial.pop_front() {
                Some(event) => event,
                None => match self.next_event(&mut pending).await {
                    Next::Event(event) => event,
                    Next::Ended => return,
                    Next::Deadline => return self.dropped_at_stop(0, 0),
                },
            };
            match self.run_one(&event).await {
                Ran::Done => {}
                Ran::Killed => return self.dropped_at_stop(1, initial.len()),
                Ran::NotStarted => return self.dropped_at_stop(0, initial.len() + 1),
            }
        }
    }

    /// The next event to run a handler for.
    async fn next_event(&mut self, pending: &mut HashMap<NodeName, Incarnation>) -> Next {
        loop {
            let received = tokio::select! {
                r = self.events.recv() => r,
                m = self.foreign.next() => return Next::Event(HookEvent::foreign(&m)),
                Ok(()) = self.formation.changed() => {
                    let decided = self.formation.borrow_and_update().clone();
                    match decided {
                        Some(f) => return Next::Event(HookEvent::formed(&f)),
                        None => continue,
                    }
                }
                () = past(&mut self.deadline) => return Next::Deadline,
            };
            let event = match received {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    self.stats
                        .dropped_lagged
                        .fetch_add(missed, Ordering::Relaxed);
                    tracing::warn!(
                        "the --on-change handlers fell behind: {missed} events were skipped"
                    );
                    continue;
                }
                Err(RecvError::Closed) => return Next::Ended,
            };
            if let Some(incarnation) = pending.remove(&event.node) {
                if event.kind == EventKind::Joined && event.member.incarnation == incarnation {
                    continue;
                }
            }
            return Next::Event(HookEvent::of(&event));
        }
    }

    /// Runs the handler of `event`, unless the stop deadline passes first.
    async fn run_one(&mut self, event: &HookEvent) -> Ran {
        let members = running_members(&self.view.borrow());
        let started = AtomicBool::new(false);
        tokio::select! {
            () = run_handler(&self.config, &self.stats, event, &members, &started) => Ran::Done,
            () = past(&mut self.deadline) => {
                if started.load(Ordering::Relaxed) { Ran::Killed } else { Ran::NotStarted }
            }
        }
    }

    /// Reports what the stop deadline cut short: the handler `killed` while running, the
    /// `initial` events not run yet, and the events still queued.
    fn dropped_at_stop(&self, killed: u64, initial: usize) {
        let queued = self.events.len() as u64;
        let not_run = initial as u64 + queued;
        if killed + not_run == 0 {
            tracing::debug!("--on-change handlers: none cut short at stop");
            return;
        }
        self.stats
            .killed_at_stop
            .fetch_add(killed, Ordering::Relaxed);
        self.stats
            .dropped_at_stop
            .fetch_add(not_run, Ordering::Relaxed);
        tracing::warn!(
            killed,
            not_run,
            "--on-change handlers cut short at stop: {killed} killed while running, {not_run} \
             events not run"
        );
    }
}

enum Ran {
    Done,
    /// Killed while running, at the stop deadline.
    Killed,
    /// The stop deadline passed while it waited to start.
    NotStarted,
}

enum Next {
    Event(HookEvent),
    Ended,
    Deadline,
}

/// Completes once the stop deadline is set and has passed.
async fn past(deadline: &mut watch::Receiver<Option<Instant>>) {
    loop {
        let at = *deadline.borrow_and_update();
        match at {
            Some(at) => tokio::select! {
                () = tokio::time::sleep_until(at) => return,
                Ok(()) = deadline.changed() => {}
            },
            None => {
                if deadline.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

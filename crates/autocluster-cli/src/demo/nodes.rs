//! The three nodes in this process: starting, crashing and leaving them, what each of them
//! has seen (every event, as it came), and who sees whom.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use autocluster::{Cluster, Event, EventKind, NodeName, Settings, Status};
use rand::Rng;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::backend::Backend;
use super::render::Row;
use super::story::LEAVE_BOUND;
use super::terminal::Out;
use crate::Failure;

pub(super) const NODES: [(&str, &str); 3] = [
    ("demo1", "127.0.0.21"),
    ("demo2", "127.0.0.22"),
    ("demo3", "127.0.0.23"),
];
/// The node that crashes, and the one that leaves cleanly.
pub(super) const CRASHES: usize = 1;
pub(super) const LEAVES: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    NotStarted,
    Up,
    Crashed,
    Left,
}

pub(super) struct Node {
    pub(super) short: &'static str,
    pub(super) name: NodeName,
    settings: Settings,
    pub(super) cluster: Option<Cluster>,
    pub(super) state: State,
    started: Option<SystemTime>,
}

/// One event, and which node saw it.
pub(super) struct Seen {
    pub(super) observer: usize,
    pub(super) event: Event,
}

impl Seen {
    /// Whether the event is about the node that saw it.
    pub(super) fn observer_is(&self, nodes: &[Node]) -> bool {
        nodes[self.observer].name == self.event.node
    }
}

/// The demo: its backend, its nodes, every event they saw, and what was printed last.
pub(super) struct Demo {
    pub(super) backend: Backend,
    pub(super) cluster_name: String,
    pub(super) nodes: Vec<Node>,
    tx: mpsc::UnboundedSender<Seen>,
    pub(super) rx: mpsc::UnboundedReceiver<Seen>,
    pub(super) log: Vec<Seen>,
    /// The who-sees-whom matrix as last printed.
    pub(super) matrix: Vec<Row>,
    pub(super) out: Out,
}

impl Demo {
    pub(super) fn new(backend: Backend) -> Result<Demo, Failure> {
        let mut rng = rand::rng();
        let cluster_name = format!("demo-{:06x}", rng.random::<u32>() & 0xff_ffff);
        let cookie: String = (0..4)
            .map(|_| format!("{:08x}", rng.random::<u32>()))
            .collect();
        let mut nodes = Vec::new();
        for (short, host) in NODES {
            let name = format!("{short}@{host}");
            let settings = Settings::from_pairs(backend.settings(&name, &cluster_name, &cookie))
                .map_err(|e| Failure::config(format!("the demo's settings are not valid: {e}")))?;
            nodes.push(Node {
                short,
                name: settings.node.clone(),
                settings,
                cluster: None,
                state: State::NotStarted,
                started: None,
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Demo {
            backend,
            cluster_name,
            matrix: vec![Row::Not(State::NotStarted); nodes.len()],
            nodes,
            tx,
            rx,
            log: Vec::new(),
            out: Out::new(),
        })
    }

    pub(super) async fn start(&mut self, i: usize) -> Result<(), Failure> {
        let node = &mut self.nodes[i];
        let now = SystemTime::now();
        self.out
            .say(now, &format!("starting {} ({})", node.short, node.name));
        let cluster = Cluster::start(&node.settings)
            .await
            .map_err(|e| Failure::from_error(&e))?;
        // Subscribe, then read the view: a member already in it may have had its `joined`
        // sent before the subscription; it is told from the view, and a later duplicate
        // skipped.
        let events = cluster.events();
        let view = cluster.view();
        let mut initial = HashMap::new();
        for entry in view.members().filter(|e| e.status == Status::Running) {
            initial.insert(entry.member.node.clone(), entry.member.incarnation);
            let _ = self.tx.send(Seen {
                observer: i,
                event: Event::joined(entry, view.revision),
            });
        }
        tokio::spawn(forward(i, events, initial, self.tx.clone()));
        node.cluster = Some(cluster);
        node.state = State::Up;
        node.started = Some(now);
        Ok(())
    }

    /// Stops node `i` as a crash would: no leave is sent, its registration stays until its
    /// TTL runs out, and its sockets close.
    pub(super) fn crash(&mut self, i: usize) -> SystemTime {
        let node = &mut self.nodes[i];
        if let Some(cluster) = node.cluster.take() {
            cluster.abandon();
        }
        node.state = State::Crashed;
        SystemTime::now()
    }

    pub(super) async fn leave(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(cluster) = node.cluster.take() {
            let _ = tokio::time::timeout(LEAVE_BOUND, cluster.leave()).await;
        }
        node.state = State::Left;
    }

    pub(super) fn abandon_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].state == State::Up {
                self.crash(i);
            }
        }
    }

    pub(super) fn sees(&self, observer: usize, node: usize) -> bool {
        self.nodes[observer]
            .cluster
            .as_ref()
            .is_some_and(|c| c.view().is_running(&self.nodes[node].name))
    }

    pub(super) fn is_up(&self, i: usize) -> bool {
        self.sees(i, i)
            && self.nodes[i]
                .cluster
                .as_ref()
                .is_some_and(|c| c.health().is_ready())
    }

    fn up(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].state == State::Up)
    }

    pub(super) fn all_see_each_other(&self) -> bool {
        self.up().all(|a| self.up().all(|b| self.sees(a, b)))
    }

    pub(super) fn anyone_sees(&self, node: usize) -> bool {
        self.up().any(|a| self.sees(a, node))
    }

    /// For every node still up, how long after `since` it saw node `i` leave.
    pub(super) fn left_after(&self, i: usize, since: SystemTime) -> Vec<(usize, Duration)> {
        self.log
            .iter()
            .filter(|s| {
                s.observer != i
                    && s.event.kind == EventKind::Left
                    && s.event.node == self.nodes[i].name
            })
            .map(|s| {
                (
                    s.observer,
                    s.event.at.duration_since(since).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// How long after node `i` started the last of the joins between it and the nodes
    /// started before it was seen (both ways).
    pub(super) fn join_time(&self, i: usize) -> Option<Duration> {
        let started = self.nodes[i].started?;
        let index = |node: &NodeName| self.nodes.iter().position(|n| n.name == *node);
        self.log
            .iter()
            .filter(|s| s.event.kind == EventKind::Joined)
            .filter(|s| {
                let subject = index(&s.event.node);
                (s.observer == i && subject.is_some_and(|k| k < i))
                    || (s.observer < i && subject == Some(i))
            })
            .map(|s| s.event.at.duration_since(started).unwrap_or_default())
            .max()
    }

    /// Leaves, seen by another node, of a node that neither crashed nor left.
    pub(super) fn false_leaves(&self) -> usize {
        self.log
            .iter()
            .filter(|s| s.event.kind == EventKind::Left && !s.observer_is(&self.nodes))
            .filter(|s| {
                ![CRASHES, LEAVES]
                    .iter()
                    .any(|&k| self.nodes[k].name == s.event.node)
            })
            .count()
    }
}

/// Sends node `i`'s events to the story, skipping the joins it was already told from its
/// first view (`initial`, by incarnation).
async fn forward(
    i: usize,
    mut events: tokio::sync::broadcast::Receiver<Event>,
    mut initial: HashMap<NodeName, autocluster::plugin::Incarnation>,
    tx: mpsc::UnboundedSender<Seen>,
) {
    loop {
        match events.recv().await {
            Ok(event) => {
                let seen = initial.remove(&event.node);
                if event.kind == EventKind::Joined && seen == Some(event.member.incarnation) {
                    continue;
                }
                if tx.send(Seen { observer: i, event }).is_err() {
                    return;
                }
            }
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        }
    }
}

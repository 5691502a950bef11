//! What the demo prints: the introduction, one line per event, the who-sees-whom matrix when
//! it changes, the summary of measured times, and the next steps.

use std::time::Duration;

use autocluster::{EventKind, LeftReason};

use super::backend::{Backend, ETCD_TTL, MCAST_HEARTBEAT, MCAST_TTL};
use super::nodes::{Demo, Seen, State, CRASHES, LEAVES};
use super::terminal::{human, secs};

/// A row of the who-sees-whom matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Row {
    Sees(Vec<bool>),
    Not(State),
}

impl Demo {
    pub(super) fn intro(&self) {
        let o = &self.out;
        match &self.backend {
            Backend::Mcast { group, port } => {
                o.title(
                    "autocluster demo: three nodes in this process, over UDP multicast on loopback",
                );
                o.plain(&format!(
                    "  group {group}, port {port}, interface 127.0.0.1; cluster {}, a random cookie",
                    self.cluster_name
                ));
                o.plain(&format!(
                    "  heartbeat {} ms, member_ttl {}: a node not heard from for {} has left",
                    MCAST_HEARTBEAT.as_millis(),
                    secs(MCAST_TTL),
                    secs(MCAST_TTL)
                ));
                o.plain(
                    "  (random group, port, cookie and name: it never mixes with a real cluster)",
                );
            }
            Backend::Etcd { url, prefix } => {
                o.title("autocluster demo: three nodes in this process, over etcd");
                o.plain(&format!(
                    "  etcd {url}, keys under /{prefix}/{}/nodes/",
                    self.cluster_name
                ));
                o.plain(&format!(
                    "  node_ttl {}: each node's key lives on a lease of {}, kept alive while it runs",
                    secs(ETCD_TTL),
                    secs(ETCD_TTL)
                ));
                o.plain("  (a random prefix and cluster name: it never mixes with a real cluster)");
            }
        }
        o.plain("  rows are nodes, columns who they see: ● running in its view, · not");
    }

    pub(super) fn print_event(&self, seen: &Seen) {
        let e = &seen.event;
        let observer = self.nodes[seen.observer].short;
        let Some(subject) = self.nodes.iter().position(|n| n.name == e.node) else {
            self.out.say(
                e.at,
                &format!("{observer} sees {} {}", e.node, e.kind.as_str()),
            );
            return;
        };
        let subject = self.nodes[subject].short;
        let text = match (e.kind, seen.observer_is(&self.nodes)) {
            (EventKind::Joined, true) => {
                format!("{observer} is up: registered, and sees itself")
            }
            (EventKind::Left, true) => format!("{observer} is out: no longer registered"),
            (EventKind::Joined, false) => {
                format!("{observer} sees {subject} {}", self.out.green("joined"))
            }
            (EventKind::Left, false) => format!(
                "{observer} sees {subject} {} ({})",
                self.out.red("left"),
                self.why(e.reason, subject == self.nodes[CRASHES].short)
            ),
            (EventKind::Updated, _) => format!("{observer} sees {subject} updated"),
        };
        self.out.say(e.at, &text);
    }

    fn why(&self, reason: Option<LeftReason>, crashed: bool) -> &'static str {
        match (reason, self.backend.is_etcd()) {
            (Some(LeftReason::Expired), _) => "expired: not heard from within its TTL",
            (Some(LeftReason::Deregistered), false) => "it said goodbye",
            (Some(LeftReason::Deregistered), true) if crashed => {
                "its lease ran out: etcd deleted its key"
            }
            (Some(LeftReason::Deregistered), true) => "it revoked its lease: etcd deleted its key",
            (Some(LeftReason::Vanished), _) => "vanished from the backend",
            (Some(LeftReason::Stopped), _) => "stopped answering",
            (Some(LeftReason::Restarted), _) => "restarted",
            (None, _) => "no reason given",
        }
    }

    fn current_matrix(&self) -> Vec<Row> {
        (0..self.nodes.len())
            .map(|a| match self.nodes[a].state {
                State::Up => Row::Sees((0..self.nodes.len()).map(|b| self.sees(a, b)).collect()),
                other => Row::Not(other),
            })
            .collect()
    }

    /// Prints who sees whom, if it changed since it was last printed.
    pub(super) fn print_matrix(&mut self) {
        let now = self.current_matrix();
        if now == self.matrix {
            return;
        }
        let o = &self.out;
        let pad = " ".repeat(9);
        let mut text = format!("{pad}      ");
        for n in &self.nodes {
            text.push_str(&format!(" {:>5}", n.short));
        }
        text.push('\n');
        for (node, row) in self.nodes.iter().zip(&now) {
            text.push_str(&format!("{pad}{:<6}", node.short));
            match row {
                Row::Sees(cells) => {
                    let cells: Vec<String> = cells
                        .iter()
                        .map(|&seen| if seen { o.green("●") } else { o.dim("·") })
                        .collect();
                    text.push_str("   ");
                    text.push_str(&cells.join("     "));
                }
                Row::Not(State::NotStarted) => text.push_str(&o.dim("  (not started)")),
                Row::Not(State::Crashed) => text.push_str(&o.dim("  (crashed)")),
                Row::Not(_) => text.push_str(&o.dim("  (left)")),
            }
            text.push('\n');
        }
        o.raw(&text);
        self.matrix = now;
    }

    /// The measured times: joins, the crash noticed (`expiry`), the clean leave seen (`leave`).
    pub(super) fn summary(&self, expiry: &[(usize, Duration)], leave: &[(usize, Duration)]) {
        let o = &self.out;
        let short = |i: usize| self.nodes[i].short;
        let mcast = matches!(self.backend, Backend::Mcast { .. });
        o.heading("Summary");
        let joins: Vec<String> = (1..self.nodes.len())
            .filter_map(|i| {
                self.join_time(i)
                    .map(|t| format!("{} {}", short(i), human(t)))
            })
            .collect();
        o.plain(&format!(
            "  joined   each new node and the others saw each other within: {}",
            joins.join(", ")
        ));
        o.plain(if mcast {
            "           (a new node announces itself; every node answers at once)"
        } else {
            "           (a new node puts its key on a lease; every node watches the prefix)"
        });
        let list = |v: &[(usize, Duration)]| {
            v.iter()
                .map(|(k, t)| format!("{} after {}", short(*k), human(*t)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        o.plain(&format!(
            "  crashed  {} sent nothing; noticed by {}",
            short(CRASHES),
            list(expiry)
        ));
        o.plain(&format!(
            "           (TTL {}: {})",
            secs(self.backend.ttl()),
            if mcast {
                "counted from the last heartbeat heard"
            } else {
                "etcd deletes the key when the lease runs out"
            }
        ));
        o.plain(&format!(
            "  left     {} {}; seen by {}",
            short(LEAVES),
            if mcast {
                "sent a leave"
            } else {
                "revoked its lease"
            },
            list(leave)
        ));
        let false_leaves = self.false_leaves();
        o.plain(&format!(
            "  events   {} seen in all, {} false leave{}",
            self.log.len(),
            false_leaves,
            if false_leaves == 1 { "" } else { "s" }
        ));
    }

    /// What to run next: a node of one's own, its status and events, the other backend.
    pub(super) fn next_steps(&self) {
        let o = &self.out;
        let (conf, other) = match self.backend {
            Backend::Mcast { .. } => (
                "examples/conf/mcast.conf",
                "--discovery etcd --etcd http://127.0.0.1:2379",
            ),
            Backend::Etcd { .. } => ("examples/conf/etcd.conf", "--discovery mcast"),
        };
        o.heading("Next steps");
        o.plain(&format!(
            "  a node of your own     autocluster agent -c {conf}"
        ));
        o.plain(&format!(
            "  a second one           AUTOCLUSTER_NODE__NAME=emqx2@127.0.0.1 \\\n                         AUTOCLUSTER_NODE__ADMIN_LISTEN=127.0.0.1:8071 autocluster agent -c {conf}"
        ));
        o.plain(&format!(
            "  what a node sees       autocluster status -c {conf}"
        ));
        o.plain(&format!(
            "  its events, as JSON    autocluster members -c {conf} --watch"
        ));
        o.plain("  run a command on each  autocluster agent -c ... --on-change 'echo \"$AUTOCLUSTER_EVENT $AUTOCLUSTER_NODE\"'");
        o.plain(&format!(
            "  this demo, otherwise   autocluster demo {other}"
        ));
        o.plain("  in production          docs/operations.md");
    }
}

//! The story, step by step: three nodes start and find each other, one crashes and is
//! expired, one leaves cleanly; each step waits, within a bound, for what it shows.

use std::time::{Duration, SystemTime};

use tokio::time::{timeout_at, Instant};

use super::backend::{Backend, DEFAULT_ETCD, MCAST_HEARTBEAT};
use super::nodes::{Demo, State, CRASHES, LEAVES};
use super::terminal::{human, secs};
use crate::Failure;

/// The pause between two nodes starting, and the quiet time after all see each other.
const START_GAP: Duration = Duration::from_millis(1200);
const STEADY: Duration = Duration::from_millis(2500);
const AFTER: Duration = Duration::from_millis(800);
/// How long the first node may take to come up, and a new node to see the others and be
/// seen: past it, discovery does not work here.
const UP_BOUND: Duration = Duration::from_secs(6);
const SEE_BOUND: Duration = Duration::from_secs(5);
/// Beyond the TTL, how long a crash may take to be noticed; how long a clean leave may take.
const EXPIRY_SLACK: Duration = Duration::from_secs(4);
pub(super) const LEAVE_BOUND: Duration = Duration::from_secs(3);
/// Events that come closer together than this are one change: the matrix is printed after.
const SETTLE: Duration = Duration::from_millis(150);

impl Demo {
    pub(super) async fn story(&mut self) -> Result<(), Failure> {
        self.intro();
        self.meet().await?;
        let expiry = self.crash_step().await?;
        let leave = self.leave_step().await?;
        // The last one leaves too, quietly: nothing is left behind in etcd.
        for i in 0..self.nodes.len() {
            if self.nodes[i].state == State::Up {
                self.leave(i).await;
            }
        }
        self.summary(&expiry, &leave);
        self.next_steps();
        Ok(())
    }

    /// Step 1: the nodes start one by one; each must come up, see the others, and be seen.
    async fn meet(&mut self) -> Result<(), Failure> {
        self.out
            .heading("1. Three nodes start, one by one, and find each other");
        for i in 0..self.nodes.len() {
            if i > 0 {
                self.follow(START_GAP, |_| false).await;
            }
            self.start(i).await?;
            let ok = if i == 0 {
                self.follow(UP_BOUND, |d| d.is_up(0)).await
            } else {
                self.follow(SEE_BOUND, |d| d.all_see_each_other()).await
            };
            if !ok {
                return Err(self.not_working(i));
            }
        }
        self.out.note(&format!(
            "all three see each other; {} keep it so",
            match self.backend {
                Backend::Mcast { .. } =>
                    format!("heartbeats every {} ms", MCAST_HEARTBEAT.as_millis()),
                Backend::Etcd { .. } => "lease keep-alives".to_string(),
            }
        ));
        self.follow(STEADY, |_| false).await;
        Ok(())
    }

    /// Step 2, a crash: the others must notice within its TTL (plus slack). Returns who
    /// noticed it, how long after.
    async fn crash_step(&mut self) -> Result<Vec<(usize, Duration)>, Failure> {
        let ttl = self.backend.ttl();
        let crashed = self.nodes[CRASHES].short;
        self.out.heading(&format!(
            "2. {crashed} crashes: it stops without a word (no leave is sent)"
        ));
        let crash_at = self.crash(CRASHES);
        self.out.say(
            crash_at,
            &format!(
                "{crashed} crashed; the others notice once {}",
                match self.backend {
                    Backend::Mcast { .. } =>
                        format!("they have not heard from it for member_ttl ({})", secs(ttl)),
                    Backend::Etcd { .. } => format!(
                        "its lease runs out in etcd (node_ttl {}) and etcd deletes its key",
                        secs(ttl)
                    ),
                }
            ),
        );
        if !self
            .follow(ttl + EXPIRY_SLACK, |d| !d.anyone_sees(CRASHES))
            .await
        {
            return Err(Failure::runtime(format!(
                "the others still see {crashed} {} after it crashed; expected within {}",
                secs(ttl + EXPIRY_SLACK),
                secs(ttl)
            )));
        }
        let expiry = self.left_after(CRASHES, crash_at);
        for (observer, took) in &expiry {
            self.out.note(&format!(
                "{} noticed the crash {} after it happened (TTL {})",
                self.nodes[*observer].short,
                human(*took),
                secs(ttl)
            ));
        }
        self.follow(AFTER, |_| false).await;
        Ok(expiry)
    }

    /// Step 3, a clean leave: the others must see it go at once. Returns who saw it, how
    /// long after.
    async fn leave_step(&mut self) -> Result<Vec<(usize, Duration)>, Failure> {
        let leaving = self.nodes[LEAVES].short;
        self.out.heading(&format!(
            "3. {leaving} leaves cleanly: it tells the others before it goes"
        ));
        let leave_at = SystemTime::now();
        self.out.say(leave_at, &format!("{leaving} leaves"));
        self.leave(LEAVES).await;
        if !self.follow(LEAVE_BOUND, |d| !d.anyone_sees(LEAVES)).await {
            return Err(Failure::runtime(format!(
                "the others still see {leaving} {} after it left",
                secs(LEAVE_BOUND)
            )));
        }
        let leave = self.left_after(LEAVES, leave_at);
        for (observer, took) in &leave {
            self.out.note(&format!(
                "{} saw it leave {} after it left",
                self.nodes[*observer].short,
                human(*took)
            ));
        }
        self.follow(AFTER, |_| false).await;
        Ok(leave)
    }

    /// Prints events as they come until `done` holds (then until they settle) or `bound`
    /// passes; prints the matrix whenever events settle and it changed. Returns whether
    /// `done` held.
    async fn follow(&mut self, bound: Duration, done: impl Fn(&Demo) -> bool) -> bool {
        let deadline = Instant::now() + bound;
        let mut met = false;
        loop {
            met = met || done(self);
            let quiet = Instant::now() + SETTLE;
            let until = if met { quiet } else { quiet.min(deadline) };
            match timeout_at(until, self.rx.recv()).await {
                Ok(Some(seen)) => {
                    self.print_event(&seen);
                    self.log.push(seen);
                }
                Ok(None) => return met,
                Err(_) => {
                    self.print_matrix();
                    if met || Instant::now() >= deadline {
                        return met;
                    }
                }
            }
        }
    }

    /// Why node `i` did not come up or see the others, and what to do about it.
    fn not_working(&self, i: usize) -> Failure {
        let node = &self.nodes[i];
        let errors: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| {
                let h = n.cluster.as_ref()?.health();
                Some(format!("{}: {}", n.short, h.last_error?))
            })
            .collect();
        let errors = if errors.is_empty() {
            String::new()
        } else {
            format!("\nlast errors:\n  {}", errors.join("\n  "))
        };
        let text = match &self.backend {
            Backend::Etcd { url, .. } if i == 0 => format!(
                "etcd at {url} does not answer: {} did not register within {}.{errors}\n\
                 Start an etcd (for example `etcd --data-dir /tmp/demo-etcd`) or point --etcd at \
                 yours; or run the demo over multicast: autocluster demo",
                node.short,
                secs(UP_BOUND)
            ),
            Backend::Etcd { url, .. } => format!(
                "{} started, but after {} the nodes still do not all see each other through \
                 etcd at {url}.{errors}",
                node.short,
                secs(SEE_BOUND)
            ),
            Backend::Mcast { group, port } => {
                let what = if i == 0 {
                    format!("{} did not come up within {}", node.short, secs(UP_BOUND))
                } else {
                    format!(
                        "{} started, but after {} the nodes still do not all see each other",
                        node.short,
                        secs(SEE_BOUND)
                    )
                };
                format!(
                    "multicast on loopback does not work here: {what} (group {group}, port {port}, \
                     interface 127.0.0.1).{errors}\n\
                     Check that the loopback interface is up and has MULTICAST (`ip link show lo`) \
                     and that no firewall drops UDP to {group} on lo; or run the demo over an \
                     etcd: autocluster demo --discovery etcd --etcd {DEFAULT_ETCD}"
                )
            }
        };
        Failure::runtime(text)
    }
}

//! `autocluster demo`: three nodes in this process find each other, one crashes and is
//! expired, one leaves cleanly; the story is printed as it happens, with timestamps, a
//! matrix of who sees whom, and the measured times.
//!
//! Over UDP multicast on loopback by default (a random group, port, cookie and cluster name,
//! so it never mixes with a real cluster or another demo), or over an etcd (a random prefix).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, SystemTime};

use autocluster::{Cluster, Event, EventKind, LeftReason, NodeName, Settings, Status};
use rand::Rng;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};
use tracing_subscriber::EnvFilter;

use crate::cli::{DemoArgs, DemoBackend};
use crate::{print_out, Failure};

const NODES: [(&str, &str); 3] = [
    ("demo1", "127.0.0.21"),
    ("demo2", "127.0.0.22"),
    ("demo3", "127.0.0.23"),
];
/// The node that crashes, and the one that leaves cleanly.
const CRASHES: usize = 1;
const LEAVES: usize = 2;

const MCAST_HEARTBEAT: Duration = Duration::from_millis(300);
const MCAST_TTL: Duration = Duration::from_secs(2);
const ETCD_TTL: Duration = Duration::from_secs(3);
const DEFAULT_ETCD: &str = "http://127.0.0.1:2379";

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
const LEAVE_BOUND: Duration = Duration::from_secs(3);
/// Events that come closer together than this are one change: the matrix is printed after.
const SETTLE: Duration = Duration::from_millis(150);

/// Runs the demo; exit 0 at the end of the story, 1 when discovery does not work here.
pub async fn run(args: &DemoArgs) -> Result<(), Failure> {
    init_logging();
    let backend = Backend::choose(args)?;
    let mut demo = Demo::new(backend)?;
    let result = demo.story().await;
    if result.is_err() {
        demo.abandon_all();
    }
    result
}

/// Quiet unless `RUST_LOG` asks: the story is on stdout, the engine's logs would drown it.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// How the demo nodes find each other.
enum Backend {
    Mcast { group: Ipv4Addr, port: u16 },
    Etcd { url: String, prefix: String },
}

impl Backend {
    fn choose(args: &DemoArgs) -> Result<Backend, Failure> {
        let mut rng = rand::rng();
        match (args.discovery, &args.etcd) {
            (Some(DemoBackend::Mcast), Some(_)) => Err(Failure::config(
                "--etcd is for --discovery etcd; the multicast demo needs no server",
            )),
            (None | Some(DemoBackend::Mcast), None) => {
                let port = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
                    .and_then(|s| s.local_addr())
                    .map(|a| a.port())
                    .map_err(|e| Failure::runtime(format!("cannot find a free UDP port: {e}")))?;
                // 239.255.0.0/16 is the local scope; a random group per run.
                let group =
                    Ipv4Addr::new(239, 255, rng.random_range(1..255), rng.random_range(1..255));
                Ok(Backend::Mcast { group, port })
            }
            (_, url) => {
                let url = url.clone().unwrap_or_else(|| DEFAULT_ETCD.to_string());
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(Failure::config(format!(
                        "--etcd {url}: expected an http:// or https:// URL, such as {DEFAULT_ETCD}"
                    )));
                }
                Ok(Backend::Etcd {
                    url,
                    prefix: format!("autocluster-demo-{:08x}", rng.random::<u32>()),
                })
            }
        }
    }

    fn ttl(&self) -> Duration {
        match self {
            Backend::Mcast { .. } => MCAST_TTL,
            Backend::Etcd { .. } => ETCD_TTL,
        }
    }

    fn is_etcd(&self) -> bool {
        matches!(self, Backend::Etcd { .. })
    }

    fn settings(&self, node: &str, cluster: &str, cookie: &str) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("node.name", node.to_string()),
            ("node.cookie", cookie.to_string()),
            ("cluster.name", cluster.to_string()),
            ("cluster.call_timeout", "2s".to_string()),
            ("cluster.backoff_min", "100ms".to_string()),
            ("cluster.backoff_max", "1s".to_string()),
        ];
        match self {
            Backend::Mcast { group, port } => pairs.extend([
                ("cluster.discovery", "mcast".to_string()),
                ("cluster.mcast.addr", group.to_string()),
                ("cluster.mcast.ports", port.to_string()),
                ("cluster.mcast.iface", "127.0.0.1".to_string()),
                ("cluster.mcast.ttl", "1".to_string()),
                ("cluster.mcast.loop", "on".to_string()),
                (
                    "cluster.mcast.heartbeat",
                    format!("{}ms", MCAST_HEARTBEAT.as_millis()),
                ),
                (
                    "cluster.mcast.member_ttl",
                    format!("{}s", MCAST_TTL.as_secs()),
                ),
            ]),
            Backend::Etcd { url, prefix } => pairs.extend([
                ("cluster.discovery", "etcd".to_string()),
                ("cluster.etcd.server", url.clone()),
                ("cluster.etcd.prefix", prefix.clone()),
                ("cluster.etcd.node_ttl", format!("{}s", ETCD_TTL.as_secs())),
            ]),
        }
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotStarted,
    Up,
    Crashed,
    Left,
}

struct Node {
    short: &'static str,
    name: NodeName,
    settings: Settings,
    cluster: Option<Cluster>,
    state: State,
    started: Option<SystemTime>,
}

/// One event, and which node saw it.
struct Seen {
    observer: usize,
    event: Event,
}

/// A row of the who-sees-whom matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Row {
    Sees(Vec<bool>),
    Not(State),
}

struct Demo {
    backend: Backend,
    cluster_name: String,
    nodes: Vec<Node>,
    tx: mpsc::UnboundedSender<Seen>,
    rx: mpsc::UnboundedReceiver<Seen>,
    log: Vec<Seen>,
    matrix: Vec<Row>,
    out: Out,
}

impl Demo {
    fn new(backend: Backend) -> Result<Demo, Failure> {
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

    async fn story(&mut self) -> Result<(), Failure> {
        self.intro();
        let ttl = self.backend.ttl();

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

        // The last one leaves too, quietly: nothing is left behind in etcd.
        for i in 0..self.nodes.len() {
            if self.nodes[i].state == State::Up {
                self.leave(i).await;
            }
        }
        self.summary(&expiry, &leave);
        Ok(())
    }

    fn intro(&self) {
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

    async fn start(&mut self, i: usize) -> Result<(), Failure> {
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
        let mut events = cluster.events();
        let view = cluster.view();
        let mut initial = HashMap::new();
        for entry in view.members().filter(|e| e.status == Status::Running) {
            initial.insert(entry.member.node.clone(), entry.member.incarnation);
            let _ = self.tx.send(Seen {
                observer: i,
                event: Event::joined(entry, view.revision),
            });
        }
        let tx = self.tx.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        let seen = initial.remove(&event.node);
                        if event.kind == EventKind::Joined && seen == Some(event.member.incarnation)
                        {
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
        });
        node.cluster = Some(cluster);
        node.state = State::Up;
        node.started = Some(now);
        Ok(())
    }

    /// Stops node `i` as a crash would: no leave is sent, its registration stays until its
    /// TTL runs out, and its sockets close.
    fn crash(&mut self, i: usize) -> SystemTime {
        let node = &mut self.nodes[i];
        if let Some(cluster) = node.cluster.take() {
            cluster.abandon();
        }
        node.state = State::Crashed;
        SystemTime::now()
    }

    async fn leave(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(cluster) = node.cluster.take() {
            let _ = tokio::time::timeout(LEAVE_BOUND, cluster.leave()).await;
        }
        node.state = State::Left;
    }

    fn abandon_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].state == State::Up {
                self.crash(i);
            }
        }
    }

    fn sees(&self, observer: usize, node: usize) -> bool {
        self.nodes[observer]
            .cluster
            .as_ref()
            .is_some_and(|c| c.view().is_running(&self.nodes[node].name))
    }

    fn is_up(&self, i: usize) -> bool {
        self.sees(i, i)
            && self.nodes[i]
                .cluster
                .as_ref()
                .is_some_and(|c| c.health().is_ready())
    }

    fn up(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].state == State::Up)
    }

    fn all_see_each_other(&self) -> bool {
        self.up().all(|a| self.up().all(|b| self.sees(a, b)))
    }

    fn anyone_sees(&self, node: usize) -> bool {
        self.up().any(|a| self.sees(a, node))
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

    fn print_event(&self, seen: &Seen) {
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

    fn print_matrix(&mut self) {
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

    /// For every node still up, how long after `since` it saw node `i` leave.
    fn left_after(&self, i: usize, since: SystemTime) -> Vec<(usize, Duration)> {
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
    fn join_time(&self, i: usize) -> Option<Duration> {
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

    fn summary(&self, expiry: &[(usize, Duration)], leave: &[(usize, Duration)]) {
        let o = &self.out;
        let ttl = self.backend.ttl();
        let short = |i: usize| self.nodes[i].short;
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
        o.plain(match self.backend {
            Backend::Mcast { .. } => {
                "           (a new node announces itself; every node answers at once)"
            }
            Backend::Etcd { .. } => {
                "           (a new node puts its key on a lease; every node watches the prefix)"
            }
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
            secs(ttl),
            match self.backend {
                Backend::Mcast { .. } => "counted from the last heartbeat heard",
                Backend::Etcd { .. } => "etcd deletes the key when the lease runs out",
            }
        ));
        o.plain(&format!(
            "  left     {} {}; seen by {}",
            short(LEAVES),
            match self.backend {
                Backend::Mcast { .. } => "sent a leave",
                Backend::Etcd { .. } => "revoked its lease",
            },
            list(leave)
        ));
        // A leave of a node that neither crashed nor left, seen by another node.
        let false_leaves = self
            .log
            .iter()
            .filter(|s| s.event.kind == EventKind::Left && !s.observer_is(&self.nodes))
            .filter(|s| {
                ![CRASHES, LEAVES]
                    .iter()
                    .any(|&k| self.nodes[k].name == s.event.node)
            })
            .count();
        o.plain(&format!(
            "  events   {} seen in all, {} false leave{}",
            self.log.len(),
            false_leaves,
            if false_leaves == 1 { "" } else { "s" }
        ));

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

impl Seen {
    /// Whether the event is about the node that saw it.
    fn observer_is(&self, nodes: &[Node]) -> bool {
        nodes[self.observer].name == self.event.node
    }
}

/// The demo's stdout: timestamps relative to the start, colors only on a terminal.
struct Out {
    start: SystemTime,
    color: bool,
}

impl Out {
    fn new() -> Out {
        Out {
            start: SystemTime::now(),
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn raw(&self, text: &str) {
        // A closed stdout ends the output, not the demo: its nodes still leave cleanly.
        let _ = print_out(text);
    }

    fn plain(&self, text: &str) {
        self.raw(&format!("{text}\n"));
    }

    fn title(&self, text: &str) {
        self.plain(&self.paint("1", text));
    }

    fn heading(&self, text: &str) {
        self.raw(&format!("\n{}\n", self.paint("1", text)));
    }

    fn say(&self, at: SystemTime, text: &str) {
        let t = at.duration_since(self.start).unwrap_or_default();
        let stamp = format!("+{}.{:03}s", t.as_secs(), t.subsec_millis());
        self.plain(&format!("{}  {text}", self.dim(&format!("{stamp:>8}"))));
    }

    fn note(&self, text: &str) {
        self.plain(&format!("{}  {}", " ".repeat(8), self.paint("36", text)));
    }

    fn green(&self, text: &str) -> String {
        self.paint("32", text)
    }

    fn red(&self, text: &str) -> String {
        self.paint("31", text)
    }

    fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// `2s`, `1.5s`.
fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// `1.4 ms` below a second, `1.84 s` above.
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(secs(Duration::from_secs(2)), "2s");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_micros(1420)), "1.4 ms");
        assert_eq!(human(Duration::from_millis(1843)), "1.84 s");
    }

    #[test]
    fn every_demo_setting_is_valid() {
        for backend in [
            Backend::Mcast {
                group: Ipv4Addr::new(239, 255, 1, 2),
                port: 40000,
            },
            Backend::Etcd {
                url: DEFAULT_ETCD.into(),
                prefix: "p".into(),
            },
        ] {
            let pairs = backend.settings("demo1@127.0.0.21", "demo-1", "c");
            Settings::from_pairs(pairs).expect("valid settings");
        }
    }
}

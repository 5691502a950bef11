//! What the benchmark watches the cluster with (the simulated members are in `members.rs`).
//!
//! Every probe records, per node, the first instant it saw the node join and leave:
//! - an [`Observer`] is a whole node (`autocluster::Cluster` over its own etcd backend and
//!   connection), read through its event stream;
//! - the raw watcher is a bare `etcd-client` watch on the same prefix, on its own
//!   connection: etcd's own notification, the baseline;
//! - the poller is the fixed-interval loop users write today: a prefix Range every second.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autocluster::plugin::{Metadata, NodeName, Origin, Registration, Section};
use autocluster::{Cluster, EngineConfig, EventKind};
use autocluster_etcd::{EtcdBackend, EtcdConfig, Layout};
use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The etcd key prefix every benchmark cluster lives under.
pub const PREFIX: &str = "bench";
/// How often the polling loop reads the prefix.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Seen {
    Join,
    Leave,
}

/// First sightings, per node and kind.
#[derive(Default)]
pub struct Recorder {
    seen: Mutex<HashMap<(String, Seen), Instant>>,
    /// Joins of simulated members (`bench*` nodes), and when the last one was seen.
    member_joins: Mutex<(usize, Option<Instant>)>,
    notify: Notify,
}

impl Recorder {
    pub fn record(&self, node: &str, what: Seen, at: Instant) {
        let new = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            match seen.entry((node.to_string(), what)) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(at);
                    true
                }
            }
        };
        if new && what == Seen::Join && node.starts_with("bench") {
            let mut m = self.member_joins.lock().unwrap_or_else(|p| p.into_inner());
            m.0 += 1;
            m.1 = Some(m.1.map_or(at, |t| t.max(at)));
        }
        if new {
            self.notify.notify_waiters();
        }
    }

    pub fn get(&self, node: &str, what: Seen) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(node.to_string(), what))
            .copied()
    }

    /// How many simulated members were seen joining, and when the last one was.
    pub fn member_joins(&self) -> (usize, Option<Instant>) {
        *self.member_joins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `cond` holds (checked at every new sighting), at most `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut cond: impl FnMut(&Recorder) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return cond(self);
            }
        }
    }

    pub async fn wait(&self, node: &str, what: Seen, timeout: Duration) -> Option<Instant> {
        self.wait_until(timeout, |r| r.get(node, what).is_some())
            .await;
        self.get(node, what)
    }
}

/// The etcd backend settings the benchmark uses.
pub fn etcd_config(endpoint: &str, node_ttl: Duration) -> Result<EtcdConfig, BoxError> {
    let mut s = Section::new("cluster.etcd");
    s.set("server", endpoint, Origin::Program);
    s.set("prefix", PREFIX, Origin::Program);
    s.set(
        "node_ttl",
        format!("{}s", node_ttl.as_secs()),
        Origin::Program,
    );
    // These figures are how fast each change reaches a watcher, every change as it is
    // written: what a cluster below `watch_coalesce_members` gets. At these sizes the default
    // reads bursts in batches (up to `watch_coalesce` later, by design; the mesh measures it).
    s.set("watch_coalesce", "0s", Origin::Program);
    Ok(EtcdConfig::from_section(&s)?)
}

pub fn nodes_prefix(cluster: &str) -> String {
    Layout::new(PREFIX, cluster).nodes_prefix().to_string()
}

/// A whole node that watches the cluster: `Cluster::with_backend` over its own etcd backend.
pub struct Observer {
    pub cluster: Cluster,
    pub rec: Arc<Recorder>,
    task: JoinHandle<()>,
}

impl Observer {
    pub fn start(cfg: &EtcdConfig, cluster: &str, k: usize) -> Observer {
        let backend = Arc::new(EtcdBackend::new(cfg.clone(), cluster));
        let node = NodeName::parse(&format!("observer{k}@127.0.0.1")).expect("valid name");
        let config = EngineConfig::new(Registration {
            node: node.clone(),
            meta: Metadata::of(node),
        });
        let cluster = Cluster::with_backend(backend, config);
        let rec = Arc::new(Recorder::default());
        let mut events = cluster.events();
        // The engine may have published its first events before this subscription: what is
        // in the view already counts as seen now (only the observers themselves, which are
        // not measured).
        for node in cluster.view().running_nodes() {
            rec.record(node.as_str(), Seen::Join, Instant::now());
        }
        let r = rec.clone();
        let task = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => {
                        let at = Instant::now();
                        let what = match e.kind {
                            EventKind::Joined => Seen::Join,
                            EventKind::Left => Seen::Leave,
                            EventKind::Updated => continue,
                        };
                        r.record(e.node.as_str(), what, at);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        eprintln!("observer lagged by {n} events");
                    }
                    Err(_) => return,
                }
            }
        });
        Observer { cluster, rec, task }
    }

    pub async fn stop(self) {
        let _ = self.cluster.leave().await;
        self.task.abort();
    }
}

/// A bare etcd-client watch on the prefix, on its own connection; established when this
/// returns.
pub struct RawWatcher {
    pub rec: Arc<Recorder>,
    task: JoinHandle<()>,
}

impl RawWatcher {
    pub async fn start(endpoint: &str, prefix: &str) -> Result<RawWatcher, BoxError> {
        let mut client = Client::connect([endpoint], None).await?;
        let mut stream = client
            .watch(prefix, Some(WatchOptions::new().with_prefix()))
            .await?;
        match stream.message().await? {
            Some(r) if r.created() => {}
            _ => return Err("the raw watch was not created".into()),
        }
        let rec = Arc::new(Recorder::default());
        let r = rec.clone();
        let prefix = prefix.to_string();
        let task = tokio::spawn(async move {
            let _client = client;
            while let Ok(Some(resp)) = stream.message().await {
                let at = Instant::now();
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let key = String::from_utf8_lossy(kv.key());
                    let node = key.strip_prefix(prefix.as_str()).unwrap_or(&key);
                    let what = match ev.event_type() {
                        EventType::Put => Seen::Join,
                        EventType::Delete => Seen::Leave,
                    };
                    r.record(node, what, at);
                }
            }
        });
        Ok(RawWatcher { rec, task })
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// The polling loop: a prefix Range every `every` on its own connection.
pub struct Poller {
    pub rec: Arc<Recorder>,
    /// Time and response size of each poll.
    pub costs: Arc<Mutex<Vec<(Duration, usize)>>>,
    task: JoinHandle<()>,
}

impl Poller {
    pub async fn start(endpoint: &str, prefix: &str, every: Duration) -> Result<Poller, BoxError> {
        let mut client = Client::connect([endpoint], None).await?;
        let rec = Arc::new(Recorder::default());
        let costs = Arc::new(Mutex::new(Vec::new()));
        let (r, c) = (rec.clone(), costs.clone());
        let prefix = prefix.to_string();
        let task = tokio::spawn(async move {
            let mut known: HashSet<String> = HashSet::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let started = Instant::now();
                let Ok(resp) = client
                    .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
                    .await
                else {
                    continue;
                };
                let at = Instant::now();
                let mut bytes = 0;
                let mut now: HashSet<String> = HashSet::with_capacity(resp.kvs().len());
                for kv in resp.kvs() {
                    bytes += kv.key().len() + kv.value().len();
                    let key = String::from_utf8_lossy(kv.key());
                    now.insert(
                        key.strip_prefix(prefix.as_str())
                            .unwrap_or(&key)
                            .to_string(),
                    );
                }
                c.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((at - started, bytes));
                for n in now.difference(&known) {
                    r.record(n, Seen::Join, at);
                }
                for n in known.difference(&now) {
                    r.record(n, Seen::Leave, at);
                }
                known = now;
            }
        });
        Ok(Poller { rec, costs, task })
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

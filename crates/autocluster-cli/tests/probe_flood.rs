//! A node's peer listener (`node.listen`) under a flood of connections that never prove the
//! cookie, run for real: two `autocluster agent` processes with the static backend on
//! loopback addresses sharing one port (`cluster.probe_interval = 500ms`), and a flood
//! client in the test aimed at one of them (the peer) from other loopback addresses
//! (127.0.1.x, 127.0.2.x, standing for other hosts). The other agent (the observer) must see
//! the peer `running` throughout: its `members --watch` stream shows no `left` for it.
//!
//! The floods run one at a time (they share the two cores), 20 s each. Run with
//! `--nocapture` to see the figures each test prints.
#![cfg(feature = "static")]

mod common;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::flood::{self, Done, Flood};
use common::{cookie, free_port_on, node_conf, wait_for, Agent, Events};

/// How long each flood lasts.
const FLOOD: Duration = Duration::from_secs(20);
/// The observer's probe interval.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// One flood at a time.
static FLOODS: Mutex<()> = Mutex::new(());

/// Two agents that see each other running, and the observer's event stream from then on.
struct Pair {
    _dir: tempfile::TempDir,
    observer: Agent,
    peer: Agent,
    peer_name: String,
    peer_listen: SocketAddr,
    events: Events,
}

impl Pair {
    fn start(hosts: [&str; 2]) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port_on(&hosts);
        let cookie = cookie("flood");
        let names = hosts.map(|h| format!("emqx@{h}"));
        let body = |host: &str| {
            format!(
                "node.cookie = {cookie}\nnode.listen = {host}:{port}\ncluster.discovery = static\n\
                 cluster.static.seeds = {}, {}\ncluster.probe_interval = {}ms\n",
                names[0],
                names[1],
                PROBE_EVERY.as_millis()
            )
        };
        let observer = Agent::start(&node_conf(
            dir.path(),
            "observer",
            &names[0],
            &body(hosts[0]),
        ));
        let peer = Agent::start(&node_conf(dir.path(), "peer", &names[1], &body(hosts[1])));
        for a in [&observer, &peer] {
            wait_for(
                &format!("{} to see both nodes running", a.name),
                || (a.running_nodes()?.len() == 2).then_some(()),
                || format!("{}\n{}", observer.diag(), peer.diag()),
            );
        }
        let events = Events::watch(&["-c", observer.conf()]);
        Pair {
            _dir: dir,
            peer_listen: format!("{}:{port}", hosts[1]).parse().unwrap(),
            peer_name: names[1].clone(),
            observer,
            peer,
            events,
        }
    }

    fn diag(&self) -> String {
        format!("{}\n{}", self.observer.diag(), self.peer.diag())
    }

    /// The peer's count of connections that ended with `outcome` (0 while it has none).
    fn peer_count(&self, outcome: &str) -> u64 {
        let name = format!("autocluster_probe_connections_total{{outcome=\"{outcome}\"}}");
        self.peer.metric(&name).unwrap_or(0.0) as u64
    }

    /// Follows the observer's events while `flood` runs: the `left` events of the peer, with
    /// when they came; then what the flood did.
    fn watch(&mut self, flood: Flood) -> (Vec<(Duration, String)>, Done) {
        let t0 = Instant::now();
        let mut left = Vec::new();
        while !flood.is_finished() {
            let Some(e) = self.events.next_within(Duration::from_millis(200)) else {
                continue;
            };
            if e["event"] == "left" && e["node"] == self.peer_name.as_str() {
                left.push((t0.elapsed(), e.to_string()));
            }
        }
        (left, flood.join())
    }

    /// Runs `flood` (started by `start`) and checks that the observer saw the peer running
    /// throughout, that the observer's probes were answered all along, and that the flood
    /// reached the peer (`pressed`: its outcomes that count the flood's connections).
    fn survive(
        &mut self,
        what: &str,
        start: impl FnOnce(SocketAddr) -> Flood,
        pressed: &[&str],
    ) -> Done {
        let proven_before = self.peer_count("proven");
        let cpu_before = self.peer.cpu_time().unwrap_or_default();
        let flood = start(self.peer_listen);
        let (left, done) = self.watch(flood);
        let answered = self.peer_count("proven").saturating_sub(proven_before);
        let cpu = self.peer.cpu_time().unwrap_or_default() - cpu_before;
        let counts: Vec<String> = ["proven", "malformed", "timeout", "closed", "evicted"]
            .iter()
            .map(|o| format!("{o}={}", self.peer_count(o)))
            .collect();
        eprintln!(
            "{what}: {} connections in {:?} ({:.0}/s); the observer saw {} `left` of the peer \
             {left:?}; the peer answered {answered} of its probes, used {:.0}% of a core; its \
             connections: {}",
            done.connections,
            done.elapsed,
            done.rate(),
            left.len(),
            cpu.as_secs_f64() * 100.0 / done.elapsed.as_secs_f64(),
            counts.join(" "),
        );
        assert!(
            left.is_empty(),
            "the observer saw the peer leave during {what}: {left:?}\n{}",
            self.diag()
        );
        // Two more probes answered after the flood: any verdict of its time is applied.
        let settled = self.peer_count("proven") + 2;
        wait_for(
            "two probes answered after the flood",
            || (self.peer_count("proven") >= settled).then_some(()),
            || self.diag(),
        );
        while let Some(e) = self.events.next_within(Duration::ZERO) {
            assert_ne!(e["event"], "left", "{e}\n{}", self.diag());
        }
        let running = self.observer.running_nodes().unwrap_or_default();
        assert!(running.contains(&self.peer_name), "{running:?}");
        let probes = (FLOOD.as_millis() / PROBE_EVERY.as_millis()) as u64;
        assert!(
            answered >= probes / 2,
            "only {answered} of about {probes} probes answered during {what}"
        );
        let flooded: u64 = pressed.iter().map(|o| self.peer_count(o)).sum();
        assert!(
            flooded >= done.connections / 2,
            "the flood did not reach the peer: {flooded} of {} connections counted",
            done.connections
        );
        done
    }
}

#[test]
fn a_peer_stays_running_through_a_thousand_silent_connections() {
    let _one = FLOODS.lock().unwrap_or_else(|p| p.into_inner());
    let mut pair = Pair::start(["127.0.0.31", "127.0.0.32"]);
    pair.survive(
        "1,000 silent connections from 25 addresses",
        |to| flood::silent(to, 1000, flood::sources(1, 25), FLOOD),
        &["evicted", "timeout"],
    );
}

#[test]
fn a_peer_stays_running_through_five_thousand_garbage_connects_a_second() {
    let _one = FLOODS.lock().unwrap_or_else(|p| p.into_inner());
    let mut pair = Pair::start(["127.0.0.33", "127.0.0.34"]);
    let done = pair.survive(
        "5,000 garbage connects a second from 16 addresses",
        |to| flood::garbage(to, 5000, flood::sources(2, 16), FLOOD),
        &["evicted", "timeout", "malformed", "closed"],
    );
    assert!(
        done.rate() >= 2000.0,
        "the flood reached only {:.0}/s",
        done.rate()
    );
}

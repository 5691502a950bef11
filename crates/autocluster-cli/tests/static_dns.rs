//! Static seeds and DNS discovery with the liveness probe, run for real: `autocluster agent`
//! processes on loopback addresses (127.0.0.11, .12, ... as separate hosts sharing one port
//! number), dnsmasq serving the records, and `status` / `members --watch` asking the agents.
//!
//! Every agent has its own `.conf`, its own admin port and `cluster.probe_interval = 500ms`.
//! Conditions are awaited by polling the admin endpoint (at most [`WAIT`] each), never by
//! fixed sleeps; every child process is killed when its guard drops, also when a test fails.
//! Run with `--nocapture` to see the timings each test prints.
#![cfg(all(feature = "static", feature = "dns"))]

mod common;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use autocluster_testkit::fixtures::dnsmasq::{Dnsmasq, DnsmasqBuilder};
use common::{cookie, free_port_on, node_conf, run, text, wait_for, Agent, Events};
use serde_json::Value;

const N1: &str = "emqx@127.0.0.11";
const N2: &str = "emqx@127.0.0.12";
const N3: &str = "emqx@127.0.0.13";

/// The running and the stopped nodes, as `/status` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Nodes {
    running: Vec<String>,
    stopped: Vec<String>,
}

impl Nodes {
    fn new(running: &[&str], stopped: &[&str]) -> Nodes {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Nodes {
            running: owned(running),
            stopped: owned(stopped),
        }
    }

    fn of(status: &Value) -> Nodes {
        let list = |key: &str| {
            status[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        Nodes {
            running: list("running_nodes"),
            stopped: list("stopped_nodes"),
        }
    }

    /// EMQX's line, as `autocluster status` prints it first.
    fn emqx_line(&self) -> String {
        let quoted = |l: &[String]| {
            l.iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut line = format!(
            "Cluster status: [{{running_nodes,[{}]}}",
            quoted(&self.running)
        );
        if !self.stopped.is_empty() {
            line.push_str(&format!(",{{stopped_nodes,[{}]}}", quoted(&self.stopped)));
        }
        line.push(']');
        line
    }
}

/// Writes `<dir>/<file>.conf` (`body` plus the admin address and the probe interval) and
/// starts an agent on it.
fn start_agent(dir: &Path, file: &str, name: &str, body: &str) -> Agent {
    let body = format!("cluster.probe_interval = 500ms\n{body}");
    Agent::start(&node_conf(dir, file, name, &body))
}

/// The agent's view as [`Nodes`], `None` while it does not answer.
fn nodes(agent: &Agent) -> Option<Nodes> {
    agent.status().map(|s| Nodes::of(&s))
}

/// Waits until the agent's view is `want`; returns how long that took.
fn await_nodes(agent: &Agent, want: &Nodes) -> Duration {
    let t0 = Instant::now();
    wait_for(
        &format!("{} sees {want:?}", agent.name),
        || (nodes(agent).as_ref() == Some(want)).then_some(()),
        || format!("it sees {:?}\n{}", nodes(agent), agent.diag()),
    );
    t0.elapsed()
}

fn static_body(seeds: &[&str], host: &str, port: u16, cookie: &str) -> String {
    format!(
        "node.cookie = {cookie}\nnode.listen = {host}:{port}\ncluster.discovery = static\n\
         cluster.static.seeds = {}\n",
        seeds.join(", ")
    )
}

fn dns_body(
    server: SocketAddr,
    kind: &str,
    name: &str,
    listen: SocketAddr,
    cookie: &str,
) -> String {
    format!(
        "node.cookie = {cookie}\nnode.listen = {listen}\ncluster.discovery = dns\n\
         cluster.dns.type = {kind}\ncluster.dns.name = {name}\ncluster.dns.app = emqx\n\
         cluster.dns.servers = {server}\ncluster.dns.interval = 1s\n"
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn start_dns(rt: &tokio::runtime::Runtime, records: DnsmasqBuilder) -> Dnsmasq {
    rt.block_on(records.start())
        .unwrap_or_else(|e| panic!("dnsmasq does not start: {e}"))
}

/// Three seeds, two running; the third starts (joined, running everywhere) and is killed
/// (left, stopped again); then a node with another cookie takes its address and is never
/// counted running, nor counts anyone else running.
#[test]
fn static_seeds_are_running_when_they_answer_the_probe() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
    let port = free_port_on(&hosts);
    let cookie = cookie("static");
    let seeds = [N1, N2, N3];
    let body = |i: usize, cookie: &str| static_body(&seeds, hosts[i], port, cookie);

    let t0 = Instant::now();
    let a1 = start_agent(dir.path(), "n1", N1, &body(0, &cookie));
    await_nodes(&a1, &Nodes::new(&[N1], &[N2, N3]));
    let mut watcher = Events::watch(&["-c", a1.conf()]);
    let a2 = start_agent(dir.path(), "n2", N2, &body(1, &cookie));
    let diag = || format!("{}\n{}", a1.diag(), a2.diag());
    // The watcher, subscribed before the second node started, sees it join.
    watcher.expect("joined", N2, &diag);
    let two = Nodes::new(&[N1, N2], &[N3]);
    for a in [&a1, &a2] {
        await_nodes(a, &two);
    }
    eprintln!(
        "static: two nodes see each other running {:?} after the first started",
        t0.elapsed()
    );
    let line = "Cluster status: [{running_nodes,['emqx@127.0.0.11','emqx@127.0.0.12']},\
                {stopped_nodes,['emqx@127.0.0.13']}]";
    assert_eq!(two.emqx_line(), line);
    for a in [&a1, &a2] {
        assert_eq!(a.status_line(), line, "{}", a.diag());
    }

    // The late seed: seen running by everyone, and a `joined` line on the watcher.
    let t3 = Instant::now();
    let mut a3 = start_agent(dir.path(), "n3", N3, &body(2, &cookie));
    let all = Nodes::new(&[N1, N2, N3], &[]);
    for a in [&a1, &a2, &a3] {
        await_nodes(a, &all);
    }
    eprintln!(
        "static: the late third seed is running on all three after {:?}",
        t3.elapsed()
    );
    for a in [&a1, &a2, &a3] {
        assert_eq!(
            a.status_line(),
            "Cluster status: [{running_nodes,['emqx@127.0.0.11','emqx@127.0.0.12','emqx@127.0.0.13']}]"
        );
    }
    let diag = || format!("{}\n{}\n{}", a1.diag(), a2.diag(), a3.diag());
    watcher.expect("joined", N3, &diag);

    // kill -9: stopped again on the others, and a `left` line.
    let tk = Instant::now();
    a3.kill();
    for a in [&a1, &a2] {
        await_nodes(a, &two);
    }
    eprintln!(
        "static: a killed seed is stopped on both others after {:?}",
        tk.elapsed()
    );
    for a in [&a1, &a2] {
        assert_eq!(a.status_line(), line);
    }
    let left = watcher.expect("left", N3, &|| a1.diag());
    assert_eq!(left["reason"], "stopped", "{left}");
    drop(a3);

    // Another cookie at the third address: refused by both, and it refuses them.
    let other = start_agent(
        dir.path(),
        "n3-other-cookie",
        N3,
        &body(2, "not-the-cookie"),
    );
    let alone = Nodes::new(&[N3], &[N1, N2]);
    await_nodes(&other, &alone);
    // Several probe intervals: each of the others logs every refused probe of the impostor.
    let refusals = |a: &Agent| a.log().matches("does not share our cookie").count();
    let (base1, base2) = (refusals(&a1), refusals(&a2));
    let t4 = Instant::now();
    wait_for(
        "both nodes refuse the impostor at four more probes",
        || {
            for a in [&a1, &a2] {
                assert_eq!(nodes(a), Some(two.clone()), "{}", a.diag());
            }
            assert_eq!(nodes(&other), Some(alone.clone()), "{}", other.diag());
            (refusals(&a1) >= base1 + 4 && refusals(&a2) >= base2 + 4).then_some(())
        },
        || format!("{}\n{}\n{}", a1.diag(), a2.diag(), other.diag()),
    );
    eprintln!(
        "static: the node with another cookie stayed stopped for {:?} (4+ probes each)",
        t4.elapsed()
    );
    for a in [&a1, &a2] {
        assert_eq!(a.status_line(), line);
    }
    assert_eq!(
        other.status_line(),
        "Cluster status: [{running_nodes,['emqx@127.0.0.13']},\
         {stopped_nodes,['emqx@127.0.0.11','emqx@127.0.0.12']}]"
    );
    let joined: Vec<Value> = watcher
        .drain()
        .into_iter()
        .filter(|e| e["event"] == "joined")
        .collect();
    assert!(joined.is_empty(), "the impostor joined: {joined:#?}");
    assert!(
        other.log().contains("does not share our cookie"),
        "{}",
        other.diag()
    );
}

/// A records: the hosts with a running agent run, the third address is stopped; with the DNS
/// server down the view is kept, marked stale, naming the server; fresh again once it is back;
/// a record added later is a new candidate, running once an agent answers there.
#[test]
fn dns_a_records_are_candidates_kept_while_the_server_is_down() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"];
    let port = free_port_on(&hosts);
    let cookie = cookie("dns-a");
    let records = Dnsmasq::builder()
        .host_record("emqx.test", "127.0.0.11")
        .host_record("emqx.test", "127.0.0.12")
        .host_record("emqx.test", "127.0.0.13");
    let mut dns = start_dns(&rt, records.clone());
    let server_addr = dns.server_addr();
    let server = server_addr.to_string();
    let listen = |i: usize| SocketAddr::new(hosts[i].parse().unwrap(), port);
    let body = |i: usize| dns_body(server_addr, "a", "emqx.test", listen(i), &cookie);

    let t0 = Instant::now();
    let a1 = start_agent(dir.path(), "n1", N1, &body(0));
    let a2 = start_agent(dir.path(), "n2", N2, &body(1));
    let two = Nodes::new(&[N1, N2], &[N3]);
    for a in [&a1, &a2] {
        await_nodes(a, &two);
    }
    eprintln!("dns a: both see {two:?} after {:?}", t0.elapsed());
    for a in [&a1, &a2] {
        assert_eq!(
            a.status_line(),
            "Cluster status: [{running_nodes,['emqx@127.0.0.11','emqx@127.0.0.12']},\
             {stopped_nodes,['emqx@127.0.0.13']}]"
        );
    }

    // The DNS server goes away: the members stay, the view turns stale and says why.
    let td = Instant::now();
    dns.stop();
    let failures = |a: &Agent| {
        a.status()
            .and_then(|s| s["health"]["consecutive_failures"].as_u64())
            .unwrap_or(0)
    };
    wait_for(
        "n1's view turns stale",
        || (a1.status()?["stale"] == true).then_some(()),
        || a1.diag(),
    );
    eprintln!("dns a: stale {:?} after dnsmasq stopped", td.elapsed());
    for a in [&a1, &a2] {
        wait_for(
            &format!("{} has failed to look up 3 times in a row", a.name),
            || {
                let s = a.status()?;
                assert_eq!(Nodes::of(&s), two, "the view changed: {s:#}\n{}", a.diag());
                (failures(a) >= 3).then_some(())
            },
            || a.diag(),
        );
    }
    eprintln!(
        "dns a: 3 failed lookups in a row, view kept, after {:?}",
        td.elapsed()
    );
    for a in [&a1, &a2] {
        let s = a.status_json();
        assert_eq!(Nodes::of(&s), two, "{s:#}");
        assert_eq!(s["stale"], true, "{s:#}");
        assert_eq!(s["health"]["stale"], true, "{s:#}");
        let error = s["health"]["last_error"].as_str().unwrap_or_default();
        assert!(error.contains(&server), "the error names {server}: {s:#}");
        assert!(
            error.contains("emqx.test"),
            "the error names the name: {s:#}"
        );
        let out = run(&["status", "-c", a.conf.to_str().unwrap()]);
        let stdout = text(&out.stdout);
        assert!(stdout.contains("view:        stale"), "{stdout}");
        assert!(stdout.contains(&server), "{stdout}");
        eprintln!("dns a: {} says: {error}", a.name);
    }

    // Back: fresh again, same view.
    let tr = Instant::now();
    rt.block_on(dns.restart()).unwrap();
    for a in [&a1, &a2] {
        wait_for(
            &format!("{} is fresh again", a.name),
            || {
                let s = a.status()?;
                (s["stale"] == false && s["health"]["stale"] == false).then_some(s)
            },
            || a.diag(),
        );
        assert_eq!(nodes(a), Some(two.clone()));
    }
    eprintln!(
        "dns a: fresh again {:?} after dnsmasq restarted",
        tr.elapsed()
    );

    // A fourth address appears in DNS: a new candidate (stopped), running once it answers.
    let tn = Instant::now();
    rt.block_on(dns.restart_with(records.host_record("emqx.test", "127.0.0.14")))
        .unwrap();
    const N4: &str = "emqx@127.0.0.14";
    let three = Nodes::new(&[N1, N2], &[N3, N4]);
    for a in [&a1, &a2] {
        await_nodes(a, &three);
    }
    eprintln!(
        "dns a: the added record is a candidate after {:?}",
        tn.elapsed()
    );
    let a4 = start_agent(dir.path(), "n4", N4, &body(3));
    let with4 = Nodes::new(&[N1, N2, N4], &[N3]);
    for a in [&a1, &a2, &a4] {
        await_nodes(a, &with4);
    }
    assert_eq!(
        a1.status_line(),
        "Cluster status: [{running_nodes,['emqx@127.0.0.11','emqx@127.0.0.12','emqx@127.0.0.14']},\
         {stopped_nodes,['emqx@127.0.0.13']}]"
    );
}

/// SRV records: each target is probed at the record's port (the two nodes listen on
/// different ports), at the target's address from the configured server, and both run, and
/// keep running, without events, poll after poll.
#[test]
fn dns_srv_targets_are_probed_at_the_record_port() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let p1 = free_port_on(&["127.0.0.11"]);
    let p2 = loop {
        let p = free_port_on(&["127.0.0.12"]);
        if p != p1 {
            break p;
        }
    };
    let cookie = cookie("dns-srv");
    let service = "_emqx._tcp.emqx.test";
    let dns = start_dns(
        &rt,
        Dnsmasq::builder()
            .srv(service, "n1.emqx.test", p1)
            .srv(service, "n2.emqx.test", p2)
            .host_record("n1.emqx.test", "127.0.0.11")
            .host_record("n2.emqx.test", "127.0.0.12"),
    );
    let (s1, s2) = ("emqx@n1.emqx.test", "emqx@n2.emqx.test");
    let l1 = SocketAddr::from(([127, 0, 0, 11], p1));
    let l2 = SocketAddr::from(([127, 0, 0, 12], p2));
    let body = |listen| dns_body(dns.server_addr(), "srv", service, listen, &cookie);
    let t0 = Instant::now();
    let a1 = start_agent(dir.path(), "n1", s1, &body(l1));
    wait_for("n1 answers", || a1.status(), || a1.diag());
    let mut watcher = Events::watch(&["-c", a1.conf()]);
    let a2 = start_agent(dir.path(), "n2", s2, &body(l2));
    let both = Nodes::new(&[s1, s2], &[]);
    for a in [&a1, &a2] {
        await_nodes(a, &both);
    }
    eprintln!("dns srv: both running after {:?}", t0.elapsed());
    let diag = || format!("{}\n{}", a1.diag(), a2.diag());
    watcher.expect("joined", s2, &diag);
    for a in [&a1, &a2] {
        assert_eq!(
            a.status_line(),
            "Cluster status: [{running_nodes,['emqx@n1.emqx.test','emqx@n2.emqx.test']}]"
        );
    }

    // Where each is probed: its address, at its record's port; the same at every poll, and
    // both keep running (the target names are not known to the system resolver).
    let addrs = |s: &Value, node: &str| -> Vec<String> {
        let m = s["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["node"] == node))
            .unwrap_or_else(|| panic!("{node} not a member: {s:#}"));
        m["meta"]["addrs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect()
    };
    let (want1, want2) = (vec![l1.to_string()], vec![l2.to_string()]);
    for a in [&a1, &a2] {
        let polls = |s: &Value| s["revision"].as_u64().unwrap_or(0);
        let first = polls(&a.status().unwrap());
        wait_for(
            &format!("{} polls DNS 4 more times", a.name),
            || {
                let s = a.status()?;
                assert_eq!(Nodes::of(&s), both, "{s:#}\n{}", a.diag());
                assert_eq!(addrs(&s, s1), want1, "{s:#}\n{}", a.diag());
                assert_eq!(addrs(&s, s2), want2, "{s:#}\n{}", a.diag());
                (polls(&s) >= first + 4).then_some(())
            },
            || a.diag(),
        );
    }
    let events = watcher.drain();
    assert!(events.is_empty(), "no event once both run: {events:#?}");
}

/// AAAA records: `emqx6.test AAAA ::1` is the candidate `emqx@::1`, probed over IPv6 by an
/// IPv4 node of the same cluster, and running. Needs IPv6 on loopback, which `tools/test.sh`
/// makes sure of.
#[test]
fn dns_aaaa_records_are_probed_over_ipv6() {
    if let Err(e) = TcpListener::bind("[::1]:0") {
        panic!(
            "this test needs IPv6 on loopback, and binding [::1]:0 failed: {e}. Enable it \
             (as root: `sysctl -w net.ipv6.conf.lo.disable_ipv6=0`; tools/test.sh does), or \
             leave this test out with `-- --skip dns_aaaa_records_are_probed_over_ipv6`"
        );
    }
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_on(&["::1", "127.0.0.11"]);
    let cookie = cookie("dns-aaaa");
    let dns = start_dns(&rt, Dnsmasq::builder().host_record("emqx6.test", "::1"));
    let v6 = SocketAddr::new(IpAddr::from(std::net::Ipv6Addr::LOCALHOST), port);
    let v4 = SocketAddr::from(([127, 0, 0, 11], port));
    let t0 = Instant::now();
    let a6 = start_agent(
        dir.path(),
        "v6",
        "emqx@::1",
        &dns_body(dns.server_addr(), "aaaa", "emqx6.test", v6, &cookie),
    );
    // This node is not in the answer: it only observes, and must prove `emqx@::1` over IPv6.
    let observer = start_agent(
        dir.path(),
        "v4",
        N1,
        &dns_body(dns.server_addr(), "aaaa", "emqx6.test", v4, &cookie),
    );
    let want = Nodes::new(&["emqx@::1"], &[]);
    for a in [&a6, &observer] {
        await_nodes(a, &want);
        assert_eq!(
            a.status_line(),
            "Cluster status: [{running_nodes,['emqx@::1']}]"
        );
    }
    eprintln!(
        "dns aaaa: emqx@::1 running on both after {:?}",
        t0.elapsed()
    );
}

/// `autocluster check` lists a key with no effect here and a key left to the application
/// once each (they used to be printed again on stderr).
#[test]
fn check_prints_notes_and_warnings_once() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("node.conf");
    std::fs::write(
        &conf,
        format!(
            "node.name = {N1}\ncluster.discovery = static\ncluster.static.seeds = {N1}, {N2}\n\
             cluster.autoheal = on\nlistener.tcp.external = 0.0.0.0:1883\n"
        ),
    )
    .unwrap();
    let out = run(&["check", "-c", conf.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let all = format!("{stdout}{stderr}");
    for key in ["cluster.autoheal", "listener.tcp.external"] {
        assert_eq!(all.matches(key).count(), 1, "{key} once:\n{all}");
    }
    assert!(stdout.contains("configuration OK"), "{stdout}");
}

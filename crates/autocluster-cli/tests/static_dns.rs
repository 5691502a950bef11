//! Static seeds and DNS discovery with the liveness probe, run for real: `autocluster agent`
//! processes on loopback addresses (127.0.0.11, .12, ... as separate hosts sharing one port
//! number), dnsmasq serving the records, and `status` / `members --watch` asking the agents.
//!
//! Every agent has its own `.conf`, its own admin port and `cluster.probe_interval = 500ms`.
//! Conditions are awaited by polling the admin endpoint (at most [`WAIT`] each), never by
//! fixed sleeps; every child process is killed when its guard drops, also when a test fails.
//! Run with `--nocapture` to see the timings each test prints.
#![cfg(all(feature = "static", feature = "dns"))]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use autocluster_testkit::fixtures::dnsmasq::{Dnsmasq, DnsmasqBuilder};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_autocluster");

/// The longest any awaited condition may take.
const WAIT: Duration = Duration::from_secs(30);

const N1: &str = "emqx@127.0.0.11";
const N2: &str = "emqx@127.0.0.12";
const N3: &str = "emqx@127.0.0.13";

/// The binary with `args`, without any `AUTOCLUSTER_*` variable of the test's environment.
fn autocluster(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AUTOCLUSTER_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn run(args: &[&str]) -> Output {
    autocluster(args).output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn free_admin() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One TCP port that is free on every one of `hosts`, as a real port number shared by hosts.
fn free_port_on(hosts: &[&str]) -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind((hosts[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        if hosts[1..]
            .iter()
            .all(|h| TcpListener::bind((*h, port)).is_ok())
        {
            return port;
        }
    }
    panic!("no port free on all of {hosts:?}");
}

/// A cookie no other test run shares.
fn cookie(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{}-{nanos}", std::process::id())
}

/// `GET path` over plain HTTP/1.0 (the body ends with the connection): (status, body).
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `f` every 50 ms until it gives a value; panics after [`WAIT`] with `what` and the
/// diagnostics `diag` returns then.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>, diag: impl Fn() -> String) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {WAIT:?}\n{}", diag());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

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

/// An `autocluster agent` process with its configuration; killed (SIGKILL) on drop.
struct Agent {
    name: String,
    conf: PathBuf,
    admin: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// Writes `<dir>/<file>.conf` (`body` plus the admin address and the probe interval) and
    /// starts an agent on it, its log in `<dir>/<file>.log`.
    fn start(dir: &Path, file: &str, name: &str, body: &str) -> Agent {
        let admin = free_admin();
        let conf = dir.join(format!("{file}.conf"));
        std::fs::write(
            &conf,
            format!(
                "node.name = {name}\nnode.admin_listen = {admin}\n\
                 cluster.probe_interval = 500ms\n{body}"
            ),
        )
        .unwrap();
        let log = dir.join(format!("{file}.log"));
        let child = autocluster(&["agent", "-c", conf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent {
            name: name.to_string(),
            conf,
            admin,
            child,
            log,
        }
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!("--- log of {} ({}):\n{log}", self.name, self.conf.display())
    }

    /// `GET /status`, or `None` while the agent does not answer.
    fn status(&self) -> Option<Value> {
        match http_get(self.admin, "/status") {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    fn nodes(&self) -> Option<Nodes> {
        self.status().map(|s| Nodes::of(&s))
    }

    /// Waits until the agent's view is `want`; returns how long that took.
    fn await_nodes(&self, want: &Nodes) -> Duration {
        let t0 = Instant::now();
        wait_for(
            &format!("{} sees {want:?}", self.name),
            || (self.nodes().as_ref() == Some(want)).then_some(()),
            || format!("it sees {:?}\n{}", self.nodes(), self.log()),
        );
        t0.elapsed()
    }

    /// `autocluster status -c <conf>`: its first line, checked to exit 0.
    fn status_line(&self) -> String {
        let out = run(&["status", "-c", self.conf.to_str().unwrap()]);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}{}\n{}",
            text(&out.stderr),
            self.log()
        );
        stdout.lines().next().unwrap_or_default().to_string()
    }

    /// `autocluster status -c <conf> --json`.
    fn status_json(&self) -> Value {
        let out = run(&["status", "-c", self.conf.to_str().unwrap(), "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
    }

    /// SIGKILL, as a crash: no leave.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `autocluster members --watch` on an agent, its lines read into a channel; killed on drop.
struct Watcher {
    child: Child,
    lines: Receiver<String>,
}

impl Watcher {
    fn start(agent: &Agent) -> Watcher {
        let mut child = autocluster(&["members", "-c", agent.conf.to_str().unwrap(), "--watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watcher { child, lines }
    }

    /// Reads events until one is `event` for `node`; returns it with the events before it.
    fn await_event(&self, event: &str, node: &str, diag: impl Fn() -> String) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                panic!(
                    "no {event:?} event for {node} within {WAIT:?}; events: {seen:#?}\n{}",
                    diag()
                );
            };
            let v: Value = serde_json::from_str(&line).expect("one JSON object a line");
            let hit = v["event"] == event && v["node"] == node;
            seen.push(v);
            if hit {
                return seen;
            }
        }
    }

    /// The events already printed, without waiting.
    fn drain(&self) -> Vec<Value> {
        self.lines
            .try_iter()
            .map(|l| serde_json::from_str(&l).expect("one JSON object a line"))
            .collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let a1 = Agent::start(dir.path(), "n1", N1, &body(0, &cookie));
    a1.await_nodes(&Nodes::new(&[N1], &[N2, N3]));
    let watcher = Watcher::start(&a1);
    let a2 = Agent::start(dir.path(), "n2", N2, &body(1, &cookie));
    let diag = || format!("{}\n{}", a1.log(), a2.log());
    // The watcher sees the second node join (which also proves it is connected).
    watcher.await_event("joined", N2, diag);
    let two = Nodes::new(&[N1, N2], &[N3]);
    for a in [&a1, &a2] {
        a.await_nodes(&two);
    }
    eprintln!(
        "static: two nodes see each other running {:?} after the first started",
        t0.elapsed()
    );
    let line = "Cluster status: [{running_nodes,['emqx@127.0.0.11','emqx@127.0.0.12']},\
                {stopped_nodes,['emqx@127.0.0.13']}]";
    assert_eq!(two.emqx_line(), line);
    for a in [&a1, &a2] {
        assert_eq!(a.status_line(), line, "{}", a.log());
    }

    // The late seed: seen running by everyone, and a `joined` line on the watcher.
    let t3 = Instant::now();
    let mut a3 = Agent::start(dir.path(), "n3", N3, &body(2, &cookie));
    let all = Nodes::new(&[N1, N2, N3], &[]);
    for a in [&a1, &a2, &a3] {
        a.await_nodes(&all);
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
    let diag = || format!("{}\n{}\n{}", a1.log(), a2.log(), a3.log());
    watcher.await_event("joined", N3, diag);

    // kill -9: stopped again on the others, and a `left` line.
    let tk = Instant::now();
    a3.kill();
    for a in [&a1, &a2] {
        a.await_nodes(&two);
    }
    eprintln!(
        "static: a killed seed is stopped on both others after {:?}",
        tk.elapsed()
    );
    for a in [&a1, &a2] {
        assert_eq!(a.status_line(), line);
    }
    let events = watcher.await_event("left", N3, || a1.log());
    let left = events.last().unwrap();
    assert_eq!(left["reason"], "stopped", "{left}");
    drop(a3);

    // Another cookie at the third address: refused by both, and it refuses them.
    let other = Agent::start(
        dir.path(),
        "n3-other-cookie",
        N3,
        &body(2, "not-the-cookie"),
    );
    let alone = Nodes::new(&[N3], &[N1, N2]);
    other.await_nodes(&alone);
    // Several probe intervals: each of the others logs every refused probe of the impostor.
    let refusals = |a: &Agent| a.log().matches("does not share our cookie").count();
    let (base1, base2) = (refusals(&a1), refusals(&a2));
    let t4 = Instant::now();
    wait_for(
        "both nodes refuse the impostor at four more probes",
        || {
            for a in [&a1, &a2] {
                assert_eq!(a.nodes(), Some(two.clone()), "{}", a.log());
            }
            assert_eq!(other.nodes(), Some(alone.clone()), "{}", other.log());
            (refusals(&a1) >= base1 + 4 && refusals(&a2) >= base2 + 4).then_some(())
        },
        || format!("{}\n{}\n{}", a1.log(), a2.log(), other.log()),
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
        other.log()
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
    let a1 = Agent::start(dir.path(), "n1", N1, &body(0));
    let a2 = Agent::start(dir.path(), "n2", N2, &body(1));
    let two = Nodes::new(&[N1, N2], &[N3]);
    for a in [&a1, &a2] {
        a.await_nodes(&two);
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
        || a1.log(),
    );
    eprintln!("dns a: stale {:?} after dnsmasq stopped", td.elapsed());
    for a in [&a1, &a2] {
        wait_for(
            &format!("{} has failed to look up 3 times in a row", a.name),
            || {
                let s = a.status()?;
                assert_eq!(Nodes::of(&s), two, "the view changed: {s:#}\n{}", a.log());
                (failures(a) >= 3).then_some(())
            },
            || a.log(),
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
            || a.log(),
        );
        assert_eq!(a.nodes(), Some(two.clone()));
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
        a.await_nodes(&three);
    }
    eprintln!(
        "dns a: the added record is a candidate after {:?}",
        tn.elapsed()
    );
    let a4 = Agent::start(dir.path(), "n4", N4, &body(3));
    let with4 = Nodes::new(&[N1, N2, N4], &[N3]);
    for a in [&a1, &a2, &a4] {
        a.await_nodes(&with4);
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
    let a1 = Agent::start(dir.path(), "n1", s1, &body(l1));
    wait_for("n1 answers", || a1.status(), || a1.log());
    let watcher = Watcher::start(&a1);
    let a2 = Agent::start(dir.path(), "n2", s2, &body(l2));
    let both = Nodes::new(&[s1, s2], &[]);
    for a in [&a1, &a2] {
        a.await_nodes(&both);
    }
    eprintln!("dns srv: both running after {:?}", t0.elapsed());
    let diag = || format!("{}\n{}", a1.log(), a2.log());
    watcher.await_event("joined", s2, diag);
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
                assert_eq!(Nodes::of(&s), both, "{s:#}\n{}", a.log());
                assert_eq!(addrs(&s, s1), want1, "{s:#}\n{}", a.log());
                assert_eq!(addrs(&s, s2), want2, "{s:#}\n{}", a.log());
                (polls(&s) >= first + 4).then_some(())
            },
            || a.log(),
        );
    }
    let events = watcher.drain();
    assert!(events.is_empty(), "no event once both run: {events:#?}");
}

/// AAAA records: `emqx6.test AAAA ::1` is the candidate `emqx@::1`, probed over IPv6 by an
/// IPv4 node of the same cluster, and running. Skipped where IPv6 loopback is absent.
#[test]
fn dns_aaaa_records_are_probed_over_ipv6() {
    if let Err(e) = TcpListener::bind("[::1]:0") {
        eprintln!("skipped: IPv6 loopback is absent here (binding [::1]:0: {e})");
        return;
    }
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_on(&["::1", "127.0.0.11"]);
    let cookie = cookie("dns-aaaa");
    let dns = start_dns(&rt, Dnsmasq::builder().host_record("emqx6.test", "::1"));
    let v6 = SocketAddr::new(IpAddr::from(std::net::Ipv6Addr::LOCALHOST), port);
    let v4 = SocketAddr::from(([127, 0, 0, 11], port));
    let t0 = Instant::now();
    let a6 = Agent::start(
        dir.path(),
        "v6",
        "emqx@::1",
        &dns_body(dns.server_addr(), "aaaa", "emqx6.test", v6, &cookie),
    );
    // This node is not in the answer: it only observes, and must prove `emqx@::1` over IPv6.
    let observer = Agent::start(
        dir.path(),
        "v4",
        N1,
        &dns_body(dns.server_addr(), "aaaa", "emqx6.test", v4, &cookie),
    );
    let want = Nodes::new(&["emqx@::1"], &[]);
    for a in [&a6, &observer] {
        a.await_nodes(&want);
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

//! The `autocluster` binary, run for real: `check` on good and bad files, and an agent with
//! `cluster.discovery = manual` (no outside service) asked by `status` and `members`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_autocluster");

const SEED_BLOCK: &str = "\
## Cluster auto-discovery strategy.
cluster.discovery = etcd
cluster.etcd.server = http://192.168.1.162:2379
cluster.etcd.prefix = emqxcl
cluster.etcd.node_ttl = 1m
node.name = emqx1@192.168.1.162
";

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

fn write_conf(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `GET path` over plain HTTP/1.0 (so the body ends with the connection): (status, body).
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

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM");
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// An agent process that is killed if the test fails before it stops it.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_agent(dir: &Path, conf: &Path, admin: Option<SocketAddr>) -> Agent {
    let log = dir.join(format!("agent-{}.log", admin.map_or(0, |a| a.port())));
    let mut args = vec!["agent".to_string(), "-c".into(), conf.display().to_string()];
    if let Some(a) = admin {
        args.extend(["--admin".into(), a.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = autocluster(&args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Agent { child, log }
}

#[test]
fn check_accepts_the_emqx_seed_block() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(dir.path(), "node.conf", SEED_BLOCK);
    let out = run(&["check", "-c", conf.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("cluster.etcd.prefix = emqxcl"), "{stdout}");
    assert!(stdout.contains("backend: etcd"), "{stdout}");
}

#[test]
fn check_locates_a_misspelt_key_and_suggests_the_right_one() {
    let dir = tempfile::tempdir().unwrap();
    let body = SEED_BLOCK.replace("cluster.etcd.prefix = emqxcl", "cluster.etcd.prefx = x");
    let conf = write_conf(dir.path(), "node.conf", &body);
    let out = run(&["check", "-c", conf.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("node.conf:4"), "{stderr}");
    assert!(
        stderr.contains("did you mean cluster.etcd.prefix"),
        "{stderr}"
    );
}

#[test]
fn check_lists_the_known_backends_for_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(
        dir.path(),
        "node.conf",
        "node.name = emqx1@127.0.0.1\ncluster.discovery = k8s\n",
    );
    let out = run(&["check", "-c", conf.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("node.conf:2"), "{stderr}");
    for backend in ["etcd", "static", "dns", "mcast", "manual"] {
        assert!(stderr.contains(backend), "{backend} missing: {stderr}");
    }
}

#[cfg(feature = "etcd")]
#[test]
fn check_builds_the_backend_and_reports_a_missing_tls_file() {
    let dir = tempfile::tempdir().unwrap();
    let body = SEED_BLOCK.replace("http://", "https://")
        + "cluster.etcd.ssl.cacertfile = /nonexistent/ca.pem\n";
    let conf = write_conf(dir.path(), "node.conf", &body);
    let out = run(&["check", "-c", conf.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("node.conf:7"), "{stderr}");
    assert!(stderr.contains("/nonexistent/ca.pem"), "{stderr}");
}

#[test]
fn check_of_a_missing_file_is_a_configuration_error() {
    let out = run(&["check", "-c", "/nonexistent/node.conf"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/node.conf"));
}

#[test]
fn an_agent_with_manual_discovery_answers_status_members_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let admin = free_addr();
    let conf = write_conf(
        dir.path(),
        "node.conf",
        &format!(
            "node.name = emqx1@127.0.0.1\ncluster.discovery = manual\nnode.admin_listen = {admin}\n"
        ),
    );
    let conf_s = conf.to_str().unwrap();
    let mut agent = start_agent(dir.path(), &conf, None);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match http_get(admin, "/health/ready") {
            Ok((200, _)) => break,
            _ if Instant::now() > deadline => panic!("never ready:\n{}", agent.log()),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    assert_eq!(http_get(admin, "/health/live").unwrap(), (200, "ok".into()));

    let out = run(&["status", "-c", conf_s]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        stdout.lines().next(),
        Some("Cluster status: [{running_nodes,['emqx1@127.0.0.1']}]"),
        "{stdout}"
    );
    assert!(stdout.contains("backend:     manual"), "{stdout}");

    let out = run(&["status", "-c", conf_s, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(json["node"], "emqx1@127.0.0.1");
    assert_eq!(json["backend"], "manual");
    assert_eq!(json["cluster"], "emqxcl");
    assert_eq!(
        json["running_nodes"],
        serde_json::json!(["emqx1@127.0.0.1"])
    );
    assert_eq!(json["health"]["registered"], true);
    assert_eq!(json["stale"], false);

    let (code, metrics) = http_get(admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    let samples: Vec<&str> = metrics.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(!samples.is_empty(), "{metrics}");
    for line in &samples {
        assert!(line.starts_with("autocluster_"), "{line}");
    }
    assert!(
        metrics.contains("autocluster_members{status=\"running\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("autocluster_ready 1"), "{metrics}");

    let out = run(&["members", "-c", conf_s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let members: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    assert_eq!(members.len(), 1, "{stdout}");
    assert_eq!(members[0]["node"], "emqx1@127.0.0.1");
    assert_eq!(members[0]["status"], "running");

    // A watcher follows the events until the agent goes away.
    let mut watcher = autocluster(&["members", "--admin", &admin.to_string(), "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        watcher.try_wait().unwrap().is_none(),
        "the watcher stopped early"
    );

    sigterm(&agent.child);
    let status = wait_exit(&mut agent.child, Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", agent.log());
    assert!(
        agent.log().contains("leaving the cluster"),
        "{}",
        agent.log()
    );

    let status = wait_exit(&mut watcher, Duration::from_secs(10)).expect("the watcher ends");
    let mut stderr = String::new();
    watcher
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("went away"), "{stderr}");
}

#[test]
fn status_without_an_agent_names_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let admin = free_addr();
    let conf = write_conf(
        dir.path(),
        "node.conf",
        &format!("node.name = emqx1@127.0.0.1\nnode.admin_listen = {admin}\n"),
    );
    let out = run(&["status", "-c", conf.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("no agent answers on {admin}")),
        "{stderr}"
    );
    assert!(stderr.contains("autocluster agent -c"), "{stderr}");

    let out = run(&["members", "--admin", &admin.to_string(), "--watch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("no agent answers on {admin}")));
}

#[test]
fn an_agent_refuses_a_taken_admin_port_and_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let conf = write_conf(
        dir.path(),
        "node.conf",
        "node.name = emqx1@127.0.0.1\ncluster.discovery = manual\n",
    );
    let mut agent = start_agent(dir.path(), &conf, Some(addr));
    let status = wait_exit(&mut agent.child, Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", agent.log());
    assert!(
        agent.log().contains(&format!("cannot listen on {addr}")),
        "{}",
        agent.log()
    );

    let bad = write_conf(dir.path(), "bad.conf", "node.name = emqx1\n");
    let out = run(&[
        "agent",
        "-c",
        bad.to_str().unwrap(),
        "--admin",
        "127.0.0.1:0",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.conf:1"), "{stderr}");
}

#[test]
fn completions_and_the_manual_page_print() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0));
        assert!(text(&out.stdout).contains("autocluster"));
    }
    let out = run(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let page = text(&out.stdout);
    assert!(page.contains(".TH autocluster"), "{page}");
    assert!(page.contains("autocluster\\-agent"), "{page}");
}

/// Two agents on loopback multicast: a watcher of the first sees the second join, and leave
/// at once when it is stopped. Skipped where multicast does not work on loopback.
#[cfg(feature = "mcast")]
#[test]
fn members_watch_streams_joins_and_leaves() {
    use std::io::BufRead;

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cookie = format!("cli-test-{}", std::process::id());
    let conf = |i: u8, admin: SocketAddr| {
        let body = format!(
            "node.name = emqx{i}@127.0.0.1\nnode.cookie = {cookie}\nnode.admin_listen = {admin}\n\
             cluster.discovery = mcast\ncluster.mcast.ports = {port}\n\
             cluster.mcast.iface = 127.0.0.1\n"
        );
        write_conf(dir.path(), &format!("m{i}.conf"), &body)
    };
    let (admin1, admin2) = (free_addr(), free_addr());
    let agent1 = start_agent(dir.path(), &conf(1, admin1), None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(http_get(admin1, "/health/ready"), Ok((200, _))) {
        if Instant::now() > deadline {
            eprintln!("skipped: multicast does not work here\n{}", agent1.log());
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut watcher = autocluster(&["members", "--admin", &admin1.to_string(), "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(300));

    let mut agent2 = start_agent(dir.path(), &conf(2, admin2), None);
    let next_event = |what: &str| -> serde_json::Value {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no {what} event:\n{}", agent1.log()));
        serde_json::from_str(&line).expect("one JSON object a line")
    };
    let joined = next_event("joined");
    assert_eq!(joined["event"], "joined", "{joined}");
    assert_eq!(joined["node"], "emqx2@127.0.0.1", "{joined}");

    sigterm(&agent2.child);
    let status = wait_exit(&mut agent2.child, Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", agent2.log());
    let left = next_event("left");
    assert_eq!(left["event"], "left", "{left}");
    assert_eq!(left["node"], "emqx2@127.0.0.1", "{left}");
    assert_eq!(left["reason"], "deregistered", "{left}");

    let _ = watcher.kill();
    let _ = watcher.wait();
}

/// The admin endpoint has no authentication: it listens on loopback unless the operator
/// chooses otherwise, and that choice is called out in the log.
#[test]
fn an_admin_endpoint_beyond_loopback_is_an_explicit_choice_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(
        dir.path(),
        "node.conf",
        "node.name = emqx1@127.0.0.1\ncluster.discovery = manual\n",
    );
    // The default is loopback.
    let out = run(&["check", "-c", conf.to_str().unwrap()]);
    assert!(
        text(&out.stdout).contains("node.admin_listen = 127.0.0.1:8070"),
        "{}",
        text(&out.stdout)
    );
    // Chosen otherwise: all addresses (reached here over loopback only).
    let port = free_addr().port();
    let all: SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
    let mut agent = start_agent(dir.path(), &conf, Some(all));
    let local: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(http_get(local, "/health/ready"), Ok((200, _))) {
        assert!(Instant::now() < deadline, "never ready:\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = agent.log();
    assert!(
        log.contains("the admin endpoint listens beyond loopback and has no authentication"),
        "{log}"
    );
    sigterm(&agent.child);
    assert_eq!(
        wait_exit(&mut agent.child, Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0)
    );
}

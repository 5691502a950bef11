//! EMQX 4.x nodes next to autocluster in v2 mode, their keys written exactly as ekka 0.8
//! writes them (`ekka_cluster_etcd.erl`, `ekka_node_ttl.erl`, `ekka_httpc.erl`): registering
//! and every keep-alive are the same `PUT /v2/keys/<prefix>/<cluster>/nodes/<node>` with the
//! form body `ttl=<node_ttl in seconds>` and no value, the keep-alive every half TTL; a
//! stopped node's key is left to expire.
//!
//! Such a node is one steady member however often it writes its key, and its restart (the key
//! expired, then written again) is seen. On every etcd found (3.4, and 3.5 where present),
//! both with `--enable-v2`. The events seen over 20 refreshes are printed
//! (`cargo test -p autocluster-etcd --test emqx_v2 -- --nocapture`).

mod common;

use std::time::Instant;

use autocluster::EventKind;
use autocluster_plugin::{Change, Discovery, Incarnation, NodeName};
use autocluster_testkit::fixtures::etcd::{available_binaries, EtcdBinary, EtcdServer};
use autocluster_testkit::suite::{Node, Target};
use common::*;

/// ekka's `node_ttl` in these tests, in seconds (EMQX's default is 60).
const EKKA_TTL: u64 = 2;
/// How many keep-alives ekka writes in each test.
const REFRESHES: usize = 20;
const EMQX9: &str = "emqx9@10.0.0.9";

/// An EMQX 4.x node's key, written as ekka writes it.
struct Ekka {
    http: reqwest::Client,
    url: String,
}

impl Ekka {
    fn new(etcd: &EtcdServer, cluster: &str, node: &str) -> Ekka {
        Ekka {
            http: reqwest::Client::new(),
            url: format!("{}/v2/keys/emqxcl/{cluster}/nodes/{node}", etcd.endpoint()),
        }
    }

    /// Registers, or keeps alive: ekka sends the same request for both. Returns etcd's
    /// answer, checked to be a success.
    async fn put(&self) -> serde_json::Value {
        let resp = self
            .http
            .put(&self.url)
            .form(&[("ttl", EKKA_TTL.to_string())])
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(status.is_success(), "etcd answered {status}: {body}");
        body
    }

    /// Whether the key exists.
    async fn exists(&self) -> bool {
        self.http.get(&self.url).send().await.unwrap().status() == 200
    }
}

async fn v2_etcd(bin: &EtcdBinary) -> EtcdServer {
    EtcdServer::builder()
        .binary(&bin.etcd)
        .v2(true)
        .start()
        .await
        .unwrap()
}

fn bins() -> Vec<EtcdBinary> {
    let bins = available_binaries();
    assert!(!bins.is_empty(), "no etcd binary found");
    bins
}

/// The backend sees one life in every refresh, in its watch and in its snapshots; the
/// expiry ends that life and the next write begins another.
#[tokio::test]
async fn ekka_refreshes_are_one_life_for_the_backend() {
    for bin in bins() {
        let etcd = v2_etcd(&bin).await;
        let ekka = Ekka::new(&etcd, "emqxcl", EMQX9);
        ekka.put().await;
        let a = autocluster_etcd::build(&ctx(
            "emqx1@192.168.1.162",
            "emqxcl",
            section(&etcd.endpoint(), &[("api", "v2")]),
        ))
        .unwrap();
        let snap = bounded(a.snapshot()).await.unwrap();
        assert_eq!(snap.members.len(), 1);
        let life = snap.members[0].incarnation;
        let mut watch = a.watch(snap.revision);
        for _ in 0..REFRESHES {
            ekka.put().await;
            match &next_changes(&mut watch).await.unwrap().changes[..] {
                [Change::Put(m)] => assert_eq!(m.incarnation, life, "etcd {}", bin.version),
                c => panic!("expected one put, got {c:?}"),
            }
        }
        let again = bounded(a.snapshot()).await.unwrap();
        assert_eq!(again.members[0].incarnation, life, "etcd {}", bin.version);

        // stopped: the key expires, the life ends; started again: a new life
        match &next_changes(&mut watch).await.unwrap().changes[..] {
            [Change::Delete { node, incarnation }] => {
                assert_eq!(node.as_str(), EMQX9);
                assert_eq!(*incarnation, Some(life), "etcd {}", bin.version);
            }
            c => panic!("expected the expiry, got {c:?}"),
        }
        ekka.put().await;
        match &next_changes(&mut watch).await.unwrap().changes[..] {
            [Change::Put(m)] => assert_ne!(m.incarnation, life, "etcd {}", bin.version),
            c => panic!("expected one put, got {c:?}"),
        }
    }
}

struct V2 {
    endpoint: String,
}

#[autocluster_plugin::async_trait]
impl Target for V2 {
    fn name(&self) -> String {
        "etcd v2".into()
    }

    async fn backend(&self, node: &NodeName) -> std::sync::Arc<dyn Discovery> {
        let settings = [("api", "v2"), ("node_ttl", "3s")];
        autocluster_etcd::build(&ctx(
            node.as_str(),
            "emqxcl",
            section(&self.endpoint, &settings),
        ))
        .unwrap()
    }
}

/// Through the engine: an autocluster node sees an EMQX node refresh its key 20 times and
/// publishes nothing; the EMQX node stops (its key expires) and starts again: `Left` then
/// `Joined`, with a new incarnation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emqx_node_refreshing_its_key_is_a_steady_member() {
    for bin in bins() {
        let etcd = v2_etcd(&bin).await;
        let ekka = Ekka::new(&etcd, "emqxcl", EMQX9);
        ekka.put().await;
        let target = V2 {
            endpoint: etcd.endpoint(),
        };
        let me = Node::start(&target, "ac1@127.0.0.1").await;
        me.wait_for_running(&["ac1@127.0.0.1", EMQX9], WAIT).await;
        assert!(me.cluster.ready(WAIT).await, "{:?}", me.cluster.health());
        // Events follow the view by a moment: both joins are recorded before counting.
        assert_eq!(me.wait_count(EMQX9, EventKind::Joined, 1, WAIT).await, 1);
        assert_eq!(
            me.wait_count("ac1@127.0.0.1", EventKind::Joined, 1, WAIT)
                .await,
            1
        );
        let emqx9 = NodeName::parse(EMQX9).unwrap();
        let life = me.cluster.view().get(&emqx9).unwrap().member.incarnation;
        let mark = me.events.lock().unwrap().len();

        for _ in 0..REFRESHES {
            // ekka writes every half TTL; here each write once the engine has taken the last
            // in (its view's revision reached the write's index: an unchanged view is
            // published without waking watchers, so it is read, not awaited).
            let index = ekka.put().await["node"]["modifiedIndex"].as_u64().unwrap();
            eventually("the engine to take the write in", || async {
                (me.cluster.view().revision.0 >= index).then_some(())
            })
            .await;
        }
        let seen = me.events.lock().unwrap()[mark..].len();
        eprintln!(
            "etcd {}: {seen} events over {REFRESHES} EMQX-style refreshes",
            bin.version
        );
        assert_eq!(seen, 0, "events: {:?}", &me.summary()[mark..]);
        assert_eq!(
            me.cluster.view().get(&emqx9).unwrap().member.incarnation,
            life
        );

        // A restart as EMQX 4.x does it: the node stops (ekka leaves its key to expire),
        // and registers again when it starts.
        let stopped = Instant::now();
        eventually("the key to expire", || async {
            (!ekka.exists().await).then_some(())
        })
        .await;
        assert_eq!(me.wait_count(EMQX9, EventKind::Left, 1, WAIT).await, 1);
        ekka.put().await;
        assert_eq!(me.wait_count(EMQX9, EventKind::Joined, 2, WAIT).await, 2);
        let kinds: Vec<_> = me.summary()[mark..].to_vec();
        assert_eq!(
            kinds,
            vec![
                (EventKind::Left, EMQX9.to_string()),
                (EventKind::Joined, EMQX9.to_string())
            ]
        );
        let new = me.cluster.view().get(&emqx9).unwrap().member.incarnation;
        assert_ne!(new, life);
        assert_ne!(new, Incarnation(0));
        eprintln!(
            "etcd {}: the restart seen {:?} after the node stopped (ttl {EKKA_TTL}s)",
            bin.version,
            stopped.elapsed()
        );
        me.leave().await;
    }
}

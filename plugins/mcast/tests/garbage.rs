//! Garbage on the group port: random datagrams, truncated, altered and replayed packets
//! change nothing and are counted.

mod common;

use autocluster_mcast::{decode, Key, MAX_DATAGRAM};
use autocluster_plugin::{Change, Discovery};
use common::{eventually, name, registration, Net, Node, Tap, Watcher};
use rand::{Rng, SeedableRng};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_group_port_changes_nothing_and_is_counted() {
    let net = Net::new(21, 47121);
    let tap = Tap::open(net);
    let a = Node::new("a@127.0.0.21").build(net);
    let b = Node::new("b@127.0.0.22").build(net);
    let mut wa = Watcher::start(&a).await;
    a.register(&registration("a@127.0.0.21")).await.unwrap();
    let lease = b.register(&registration("b@127.0.0.22")).await.unwrap();
    b.keep_alive(&lease).await.unwrap();
    b.keep_alive(&lease).await.unwrap();
    wa.until("b's announce and two heartbeats", |w| {
        w.puts("b@127.0.0.22") >= 3
    })
    .await;

    // b's real packets, as the tap heard them.
    let key = Key::derive("secret");
    let b_name = name("b@127.0.0.22");
    let real: Vec<Vec<u8>> = tap
        .drain()
        .into_iter()
        .filter(|d| decode(d, &key).is_ok_and(|p| p.node == b_name))
        .collect();
    assert!(real.len() >= 3, "the tap heard b");
    let sample = real.last().unwrap().clone();

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x006d_6361_7374);
    let mut garbage: Vec<Vec<u8>> = Vec::new();
    for _ in 0..100 {
        let len = rng.random_range(0..300);
        garbage.push((0..len).map(|_| rng.random()).collect());
    }
    // Random bytes behind our magic and version.
    for _ in 0..20 {
        let mut d = b"ACMC\x01".to_vec();
        d.extend((0..rng.random_range(0..200)).map(|_| rng.random::<u8>()));
        garbage.push(d);
    }
    garbage.push(vec![0x41; MAX_DATAGRAM + 1]);
    for cut in 0..sample.len() {
        garbage.push(sample[..cut].to_vec());
    }
    for i in 0..sample.len() {
        let mut d = sample.clone();
        d[i] ^= 1 << rng.random_range(0..8);
        garbage.push(d);
    }
    let replays = real.len();
    garbage.extend(real);

    let before = wa.members.clone();
    let changes_before = wa.changes.len();
    let counted = a.invalid_entries();
    // In rounds, so the receive buffer never overflows.
    for (round, chunk) in garbage.chunks(32).enumerate() {
        for d in chunk {
            tap.send(d).await;
        }
        let want = counted + (garbage.len().min((round + 1) * 32)) as u64;
        eventually("the garbage counted", || a.invalid_entries() == want).await;
    }
    let drops = a.drops();
    assert_eq!(drops.replayed, replays as u64, "{drops:?}");
    assert_eq!(drops.too_large, 1, "{drops:?}");
    assert_eq!(a.invalid_entries(), counted + garbage.len() as u64);

    // Nothing changed: the next change a sees is b's next heartbeat, and nothing else.
    b.keep_alive(&lease).await.unwrap();
    wa.until("b's next heartbeat", |w| w.changes.len() > changes_before)
        .await;
    assert_eq!(wa.changes.len(), changes_before + 1);
    assert!(matches!(&wa.changes[changes_before], Change::Put(m) if m.node == b_name));
    assert_eq!(
        wa.members.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
}

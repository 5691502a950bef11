//! `decode` as a pure function: it reads back what `encode` wrote, and never panics.

use std::collections::BTreeMap;
use std::time::Duration;

use autocluster_mcast::packet::{MAGIC, TAG_LEN, VERSION};
use autocluster_mcast::{decode, encode, seal, DecodeError, Key, Kind, Packet};
use autocluster_plugin::{Metadata, NodeName};
use proptest::prelude::*;

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Announce),
        Just(Kind::Heartbeat),
        Just(Kind::Leave),
        Just(Kind::Reply),
    ]
}

fn meta(node: NodeName) -> impl Strategy<Value = Option<Metadata>> {
    proptest::option::of((
        proptest::collection::vec("[0-9.:]{1,21}", 0..3),
        proptest::option::of("[a-z0-9.-]{1,12}"),
        proptest::option::of(any::<u64>()),
        proptest::collection::btree_map("[a-z]{1,8}", "\\PC{0,16}", 0..4),
        any::<bool>(),
    ))
    .prop_map(move |m| {
        m.map(|(addrs, version, started_at_ms, labels, named)| {
            let mut meta = Metadata::default();
            meta.node = named.then(|| node.clone());
            meta.addrs = addrs;
            meta.version = version;
            meta.started_at_ms = started_at_ms;
            meta.labels = labels.into_iter().collect::<BTreeMap<_, _>>();
            meta
        })
    })
}

fn packet() -> impl Strategy<Value = Packet> {
    (
        "[a-z][a-z0-9_.-]{0,20}@[a-z][a-z0-9]{0,20}(\\.[a-z][a-z0-9-]{0,10}[a-z]){0,2}",
        "\\PC{1,40}",
    )
        .prop_filter("cluster fits in 255 bytes", |(_, c)| c.len() <= 255)
        .prop_flat_map(|(node, cluster)| {
            let node = NodeName::parse(&node).unwrap();
            (
                kind(),
                Just(cluster),
                Just(node.clone()),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                1..=u32::MAX,
                meta(node),
            )
        })
        .prop_map(
            |(kind, cluster, node, incarnation, seq, timestamp_ms, ttl, meta)| Packet {
                kind,
                cluster,
                node,
                incarnation,
                seq,
                timestamp_ms,
                member_ttl: Duration::from_millis(u64::from(ttl)),
                meta,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn roundtrip(p in packet(), cookie in "\\PC{0,40}") {
        let key = Key::derive(&cookie);
        let bytes = encode(&p, &key).unwrap();
        prop_assert_eq!(decode(&bytes, &key), Ok(p));
    }

    #[test]
    fn any_change_to_a_packet_is_refused(p in packet(), at in any::<prop::sample::Index>(), bit in 0..8u8) {
        let key = Key::derive("secret");
        let mut bytes = encode(&p, &key).unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(decode(&bytes, &key).is_err());
    }

    #[test]
    fn a_cut_packet_is_refused(p in packet(), at in any::<prop::sample::Index>()) {
        let key = Key::derive("secret");
        let bytes = encode(&p, &key).unwrap();
        prop_assert!(decode(&bytes[..at.index(bytes.len())], &key).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..9000)) {
        prop_assert!(decode(&bytes, &Key::derive("secret")).is_err());
    }

    /// Behind a valid tag (a cookie holder sending garbage), the parser still never panics.
    #[test]
    fn authentic_garbage_never_panics(rest in proptest::collection::vec(any::<u8>(), 0..600)) {
        let key = Key::derive("secret");
        let mut body = MAGIC.to_vec();
        body.push(VERSION);
        body.extend_from_slice(&rest);
        let _ = decode(&seal(body, &key), &key);
    }

    /// Authentic, with valid lengths but arbitrary contents.
    #[test]
    fn authentic_fields_never_panic(
        kind in any::<u8>(),
        fixed in proptest::collection::vec(any::<u8>(), 28),
        cluster in proptest::collection::vec(any::<u8>(), 0..40),
        node in proptest::collection::vec(any::<u8>(), 0..40),
        meta in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let key = Key::derive("secret");
        let mut body = MAGIC.to_vec();
        body.push(VERSION);
        body.push(kind);
        body.extend_from_slice(&fixed);
        body.push(cluster.len() as u8);
        body.extend_from_slice(&cluster);
        body.push(node.len() as u8);
        body.extend_from_slice(&node);
        body.extend_from_slice(&(meta.len() as u16).to_be_bytes());
        body.extend_from_slice(&meta);
        if let Ok(p) = decode(&seal(body, &key), &key) {
            // What is accepted writes back to the same packet.
            let again = encode(&p, &key).unwrap();
            prop_assert_eq!(decode(&again, &key), Ok(p));
        }
    }

    /// Authentic, well-formed, with arbitrary JSON-ish metadata.
    #[test]
    fn authentic_metadata_never_panics(json in "\\{(\"[a-z_]{1,14}\":(\"[^\"]{0,10}\"|[0-9]{1,5}|null|\\[\\]|\\{\\}),?){0,4}\\}") {
        let key = Key::derive("secret");
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&[VERSION, 2]);
        body.extend_from_slice(&[0; 24]);
        body.extend_from_slice(&1000u32.to_be_bytes());
        body.extend_from_slice(b"\x01c\x03a@b");
        body.extend_from_slice(&(json.len() as u16).to_be_bytes());
        body.extend_from_slice(json.as_bytes());
        if let Ok(p) = decode(&seal(body, &key), &key) {
            let again = encode(&p, &key).unwrap();
            prop_assert_eq!(decode(&again, &key), Ok(p));
        }
    }
}

#[test]
fn size_limits() {
    let key = Key::derive("secret");
    assert_eq!(decode(&[], &key), Err(DecodeError::TooShort(0)));
    assert_eq!(
        decode(&vec![0; 8193], &key),
        Err(DecodeError::TooLarge(8193))
    );
    let mut v2 = MAGIC.to_vec();
    v2.push(2);
    v2.resize(100, 0);
    assert_eq!(decode(&v2, &key), Err(DecodeError::Version(2)));
    // The smallest packet: the fixed fields, three length bytes and the tag.
    let mut min = MAGIC.to_vec();
    min.push(VERSION);
    min.resize(34 + 4 + TAG_LEN, 0);
    assert_eq!(
        decode(&min[..min.len() - 1], &key),
        Err(DecodeError::TooShort(69))
    );
    assert_eq!(decode(&min, &key), Err(DecodeError::BadMac));
}

/// Inputs the fuzz target (`fuzz/`) found or that guard a past mistake: each must be
/// refused without a panic.
#[test]
fn fuzz_regressions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let key = Key::derive("secret");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "bin") {
            let bytes = std::fs::read(&path).unwrap();
            let _ = decode(&bytes, &key);
            // The same bytes behind a valid tag reach the parser.
            let _ = decode(&seal(bytes, &key), &key);
            n += 1;
        }
    }
    assert!(n > 0, "no inputs in {}", dir.display());
}

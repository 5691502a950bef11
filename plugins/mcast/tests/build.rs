//! `build`: checks the settings, opens nothing, declares the capabilities.

mod common;

use std::time::Duration;

use autocluster_mcast::{build, NAME};
use autocluster_plugin::{Discovery, ErrorKind, Origin, Registration, Registrations, ViewMode};
use common::{registration, Net, Node};

#[test]
fn builds_outside_a_runtime_and_declares_its_capabilities() {
    let ctx = Node {
        heartbeat: "2s",
        member_ttl: "9s",
        ..Node::new("a@127.0.0.21")
    }
    .context(Net::new(31, 47131));
    let d = build(&ctx).unwrap();
    assert_eq!(d.name(), NAME);
    let caps = d.capabilities();
    assert_eq!(caps.view, ViewMode::Observe);
    assert_eq!(caps.registration, Registrations::Heartbeat);
    assert_eq!(caps.ttl, Duration::from_secs(9));
    assert_eq!(caps.keep_alive_every, Duration::from_secs(2));
    assert!(!caps.lock && !caps.candidates_only);
    assert_eq!(d.invalid_entries(), 0);
    assert!(!format!("{d:?}").contains("secret"));
}

#[test]
fn refuses_a_member_ttl_not_above_the_heartbeat() {
    let mut ctx = Node::new("a@127.0.0.21").context(Net::new(31, 47131));
    ctx.section.set("heartbeat", "5s", Origin::Program);
    ctx.section.set("member_ttl", "5s", Origin::Program);
    let e = build(&ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("cluster.mcast.member_ttl"), "{e}");
}

#[test]
fn refuses_an_empty_cookie() {
    let mut ctx = Node::new("a@127.0.0.21").context(Net::new(31, 47131));
    ctx.cookie.clear();
    let e = build(&ctx).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("node.cookie"), "{e}");
}

#[tokio::test]
async fn refuses_metadata_too_large_for_a_packet() {
    let d = Node::new("a@127.0.0.21").build(Net::new(32, 47132));
    let mut reg: Registration = registration("a@127.0.0.21");
    reg.meta.labels.insert("big".into(), "x".repeat(5000));
    let e = d.register(&reg).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("4096"), "{e}");
}

#[tokio::test]
async fn an_interface_that_is_not_there_is_a_retryable_unavailable_error() {
    let mut ctx = Node::new("a@127.0.0.21").context(Net::new(33, 47133));
    // An address from TEST-NET-1: no interface of this machine has it.
    ctx.section.set("iface", "192.0.2.1", Origin::Program);
    let d = build(&ctx).unwrap();
    let e = d.register(&registration("a@127.0.0.21")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.is_retryable());
    assert!(e.to_string().contains("192.0.2.1"), "{e}");
    let e = futures::StreamExt::next(&mut d.observe())
        .await
        .expect("one item")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
}

//! The DNS backend against a real DNS server (dnsmasq) on a free loopback port.

use std::sync::Arc;
use std::time::Duration;

use autocluster_plugin::{
    BackendContext, Discovery, ErrorKind, Member, NodeName, Origin, Section, Snapshot, ViewMode,
};
use autocluster_testkit::fixtures::dnsmasq::{Dnsmasq, DnsmasqBuilder};

fn backend(dns: &Dnsmasq, pairs: &[(&str, &str)]) -> Arc<dyn Discovery> {
    let mut section = Section::new("cluster.dns");
    section.set("servers", dns.server_addr().to_string(), Origin::Program);
    for (k, v) in pairs {
        section.set(*k, *v, Origin::Program);
    }
    let ctx = BackendContext::new(
        NodeName::parse("emqx@127.0.0.11").unwrap(),
        "emqxcl",
        section,
    )
    .with_cookie("cookie");
    autocluster_dns::build(&ctx).unwrap()
}

/// A snapshot, within a generous bound.
async fn snapshot(b: &dyn Discovery) -> autocluster_plugin::Result<Snapshot> {
    tokio::time::timeout(Duration::from_secs(30), b.snapshot())
        .await
        .expect("a DNS snapshot finishes within 30 s")
}

fn names(s: &Snapshot) -> Vec<&str> {
    s.members.iter().map(|m| m.node.as_str()).collect()
}

fn addrs(m: &Member) -> Vec<&str> {
    m.meta
        .as_ref()
        .map(|meta| meta.addrs.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

fn two_hosts() -> DnsmasqBuilder {
    Dnsmasq::builder()
        .host_record("emqx.test", "127.0.0.12")
        .host_record("emqx.test", "127.0.0.11")
}

#[tokio::test]
async fn a_records_are_candidates_named_app_at_address() {
    let dns = two_hosts().start().await.unwrap();
    let b = backend(&dns, &[("name", "emqx.test")]);
    assert!(b.capabilities().candidates_only);
    assert_eq!(
        b.capabilities().view,
        ViewMode::Poll {
            interval: Duration::from_secs(10)
        }
    );
    let first = snapshot(&*b).await.unwrap();
    assert_eq!(names(&first), ["emqx@127.0.0.11", "emqx@127.0.0.12"]);
    assert!(first.members.iter().all(|m| m.meta.is_none()));
    let second = snapshot(&*b).await.unwrap();
    assert_eq!(second.members, first.members);
    assert!(second.revision > first.revision);
}

#[tokio::test]
async fn app_overrides_the_name_part() {
    let dns = two_hosts().start().await.unwrap();
    let b = backend(&dns, &[("name", "emqx.test."), ("app", "broker")]);
    let s = snapshot(&*b).await.unwrap();
    assert_eq!(names(&s), ["broker@127.0.0.11", "broker@127.0.0.12"]);
}

#[tokio::test]
async fn aaaa_records_are_candidates_with_ipv6_hosts() {
    let dns = Dnsmasq::builder()
        .host_record("v6.emqx.test", "::1")
        .host_record("v6.emqx.test", "fd00::5")
        .host_record("v4only.emqx.test", "127.0.0.11")
        .start()
        .await
        .unwrap();
    let b = backend(&dns, &[("name", "v6.emqx.test"), ("type", "aaaa")]);
    let s = snapshot(&*b).await.unwrap();
    assert_eq!(names(&s), ["emqx@::1", "emqx@fd00::5"]);
    assert_eq!(
        s.members[0].node.host_ip(),
        Some("::1".parse().unwrap()),
        "the host is an address the probe can use"
    );
    // EMQX 5's key name works the same; a name with A records only has no AAAA: empty.
    let b = backend(
        &dns,
        &[("name", "v4only.emqx.test"), ("record_type", "aaaa")],
    );
    assert_eq!(snapshot(&*b).await.unwrap().members, vec![]);
}

#[tokio::test]
async fn srv_targets_are_candidates_probed_at_the_record_port() {
    let dns = Dnsmasq::builder()
        .host_record("n1.emqx.test", "127.0.0.11")
        .srv("_emqx._tcp.emqx.test", "n1.emqx.test", 4370)
        .srv("_emqx._tcp.emqx.test", "n2.emqx.test", 4372)
        .srv("_emqx._tcp.emqx.test", "n2.emqx.test", 4371)
        .start()
        .await
        .unwrap();
    let b = backend(&dns, &[("name", "_emqx._tcp.emqx.test"), ("type", "srv")]);
    let s = snapshot(&*b).await.unwrap();
    assert_eq!(names(&s), ["emqx@n1.emqx.test", "emqx@n2.emqx.test"]);
    // n1's address came with the answer; n2 has none, so its name stays for the prober
    // to resolve. One target on two ports is one candidate with both.
    assert_eq!(addrs(&s.members[0]), ["127.0.0.11:4370"]);
    assert_eq!(
        addrs(&s.members[1]),
        ["n2.emqx.test:4371", "n2.emqx.test:4372"]
    );
}

#[tokio::test]
async fn every_srv_target_gets_its_address_from_the_servers_at_every_poll() {
    // hickory keeps the additional A records of one SRV target only; the others are asked
    // apart, so no target is left to the system resolver (which does not know them).
    let dns = Dnsmasq::builder()
        .srv("_emqx._tcp.emqx.test", "n1.emqx.test", 4371)
        .srv("_emqx._tcp.emqx.test", "n2.emqx.test", 4372)
        .srv("_emqx._tcp.emqx.test", "n3.emqx.test", 4373)
        .host_record("n1.emqx.test", "127.0.0.11")
        .host_record("n2.emqx.test", "127.0.0.12")
        .host_record("n3.emqx.test", "::1")
        .start()
        .await
        .unwrap();
    let b = backend(&dns, &[("name", "_emqx._tcp.emqx.test"), ("type", "srv")]);
    for _ in 0..5 {
        let s = snapshot(&*b).await.unwrap();
        let found: Vec<Vec<&str>> = s.members.iter().map(addrs).collect();
        assert_eq!(
            found,
            [["127.0.0.11:4371"], ["127.0.0.12:4372"], ["[::1]:4373"]]
        );
    }
}

#[tokio::test]
async fn nxdomain_is_an_empty_answer_not_an_error() {
    let dns = two_hosts().start().await.unwrap();
    let b = backend(&dns, &[("name", "missing.emqx.test")]);
    let s = snapshot(&*b).await.unwrap();
    assert_eq!(s.members, vec![]);
    let srv = backend(
        &dns,
        &[("name", "_missing._tcp.emqx.test"), ("type", "srv")],
    );
    assert_eq!(snapshot(&*srv).await.unwrap().members, vec![]);
}

#[tokio::test]
async fn a_refusing_server_is_an_error_not_an_empty_answer() {
    // dnsmasq refuses names outside its local zones (it has no upstream to ask).
    let dns = two_hosts().start().await.unwrap();
    let b = backend(&dns, &[("name", "emqx.elsewhere")]);
    let e = snapshot(&*b).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    let text = e.to_string();
    assert!(text.contains("REFUSED"), "{text}");
    assert!(text.contains("emqx.elsewhere"), "{text}");
}

#[tokio::test]
async fn a_stopped_server_is_a_retryable_error_and_a_restart_brings_new_records() {
    let mut dns = two_hosts().start().await.unwrap();
    let b = backend(&dns, &[("name", "emqx.test")]);
    assert_eq!(snapshot(&*b).await.unwrap().members.len(), 2);

    dns.stop();
    let e = snapshot(&*b).await.unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        "{e:?}"
    );
    assert!(
        e.is_retryable(),
        "the engine keeps the last view and retries"
    );
    let text = e.to_string();
    assert!(text.contains("emqx.test"), "names the name: {text}");
    assert!(
        text.contains(&dns.server_addr().to_string()),
        "names the server: {text}"
    );

    dns.restart_with(two_hosts().host_record("emqx.test", "127.0.0.13"))
        .await
        .unwrap();
    let s = snapshot(&*b).await.unwrap();
    assert_eq!(
        names(&s),
        ["emqx@127.0.0.11", "emqx@127.0.0.12", "emqx@127.0.0.13"]
    );
}

#[tokio::test]
async fn nothing_is_cached_between_polls() {
    let mut dns = two_hosts().start().await.unwrap();
    let b = backend(&dns, &[("name", "emqx.test")]);
    assert_eq!(snapshot(&*b).await.unwrap().members.len(), 2);
    dns.restart_with(Dnsmasq::builder().host_record("emqx.test", "127.0.0.13"))
        .await
        .unwrap();
    assert_eq!(names(&snapshot(&*b).await.unwrap()), ["emqx@127.0.0.13"]);
    dns.restart_with(Dnsmasq::builder()).await.unwrap();
    assert_eq!(snapshot(&*b).await.unwrap().members, vec![]);
}

#[test]
fn garbage_settings_are_refused_with_located_errors() {
    let at = |line| Origin::File {
        path: "node.conf".into(),
        line,
    };
    for (key, value, expected) in [
        (
            "type",
            "cname",
            "node.conf:2: cluster.dns.type = cname: expected a, aaaa or srv",
        ),
        (
            "servers",
            "localhost:53",
            "node.conf:2: cluster.dns.servers = localhost:53: expected",
        ),
        (
            "interval",
            "soon",
            "node.conf:2: cluster.dns.interval = soon: expected a duration",
        ),
        (
            "app",
            "a@b",
            "node.conf:2: cluster.dns.app = a@b: expected the name part",
        ),
    ] {
        let mut section = Section::new("cluster.dns");
        section.set("name", "emqx.test", at(1));
        section.set(key, value, at(2));
        let ctx = BackendContext::new(
            NodeName::parse("emqx@127.0.0.11").unwrap(),
            "emqxcl",
            section,
        )
        .with_cookie("cookie");
        let e = autocluster_dns::build(&ctx).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().starts_with(expected), "{e}");
    }
}

#[test]
fn build_needs_no_runtime_and_no_network() {
    let mut section = Section::new("cluster.dns");
    section.set("name", "emqx.test", Origin::Program);
    section.set("servers", "192.0.2.1:53", Origin::Program);
    let mut ctx = BackendContext::new(
        NodeName::parse("emqx@127.0.0.11").unwrap(),
        "emqxcl",
        section,
    )
    .with_cookie("cookie");
    let b = autocluster_dns::build(&ctx).unwrap();
    assert_eq!(b.name(), "dns");
    assert_eq!(b.invalid_entries(), 0);
    // Without servers the system's resolver configuration is read (a file, not the network).
    if std::path::Path::new("/etc/resolv.conf").is_file() {
        ctx.section = Section::new("cluster.dns");
        ctx.section.set("name", "emqx.test", Origin::Program);
        assert!(autocluster_dns::build(&ctx).is_ok());
    }
}

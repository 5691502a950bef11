//! TLS: client certificates, a wrong CA, an expired server certificate, bad files.

mod common;

use autocluster_plugin::ErrorKind;
use autocluster_testkit::fixtures::etcd::EtcdServer;
use autocluster_testkit::fixtures::tls::TestCerts;
use common::*;

/// A failure case: what it is, its settings, what the error must say.
type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);

fn p(path: &std::path::Path) -> String {
    path.display().to_string()
}

#[tokio::test]
async fn client_certificates_and_their_failures() {
    let certs = TestCerts::generate().unwrap();
    let etcd = EtcdServer::builder()
        .tls(certs.clone())
        .start()
        .await
        .unwrap();
    assert!(etcd.endpoint().starts_with("https://"));

    // the right CA and a client certificate it signed: everything works
    let good = [
        ("ssl.cacertfile", p(&certs.ca_cert)),
        ("ssl.certfile", p(&certs.client_cert)),
        ("ssl.keyfile", p(&certs.client_key)),
    ];
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = backend(&etcd, &good);
    let lease = bounded(a.register(&reg("emqx1@192.168.1.162")))
        .await
        .unwrap();
    bounded(a.keep_alive(&lease)).await.unwrap();
    let snap = bounded(a.snapshot()).await.unwrap();
    assert_eq!(snap.members.len(), 1);
    let mut watch = a.watch(snap.revision);
    bounded(a.deregister(&lease)).await.unwrap();
    next_changes(&mut watch).await.unwrap();

    // each bad setup fails with kind Tls and says why
    let cases: Vec<Case> = vec![
        (
            "wrong CA",
            vec![
                ("ssl.cacertfile", p(&certs.other_ca_cert)),
                ("ssl.certfile", p(&certs.client_cert)),
                ("ssl.keyfile", p(&certs.client_key)),
            ],
            "trusted CA",
        ),
        (
            "system roots only",
            vec![
                ("ssl.certfile", p(&certs.client_cert)),
                ("ssl.keyfile", p(&certs.client_key)),
            ],
            "trusted CA",
        ),
        (
            "client certificate of another CA",
            vec![
                ("ssl.cacertfile", p(&certs.ca_cert)),
                ("ssl.certfile", p(&certs.other_client_cert)),
                ("ssl.keyfile", p(&certs.other_client_key)),
            ],
            "client certificate",
        ),
        (
            "expired client certificate",
            vec![
                ("ssl.cacertfile", p(&certs.ca_cert)),
                ("ssl.certfile", p(&certs.expired_client_cert)),
                ("ssl.keyfile", p(&certs.expired_client_key)),
            ],
            "client certificate",
        ),
        (
            "no client certificate",
            vec![("ssl.cacertfile", p(&certs.ca_cert))],
            "client certificate",
        ),
    ];
    for (what, settings, says) in cases {
        let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let b = backend(&etcd, &settings);
        let e = bounded(b.snapshot()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Tls, "{what}: {e}");
        assert!(e.to_string().contains(says), "{what}: {e}");
    }
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused() {
    let certs = TestCerts::generate().unwrap();
    let etcd = EtcdServer::builder()
        .tls(certs.clone())
        .server_identity(&certs.expired_server_cert, &certs.expired_server_key)
        .client_cert_auth(false)
        .start()
        .await
        .unwrap();
    let ca = p(&certs.ca_cert);
    let b = backend(&etcd, &[("ssl.cacertfile", ca.as_str())]);
    let e = bounded(b.snapshot()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
}

#[test]
fn bad_tls_files_are_config_errors_at_build() {
    let certs = TestCerts::generate().unwrap();
    let garbage = certs.dir().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let missing = certs.dir().join("missing-key.pem");
    for (settings, key) in [
        (
            vec![
                ("ssl.cacertfile", p(&certs.ca_cert)),
                ("ssl.certfile", p(&certs.client_cert)),
                ("ssl.keyfile", p(&missing)),
            ],
            "cluster.etcd.ssl.keyfile",
        ),
        (
            vec![("ssl.certfile", p(&certs.client_cert))],
            "cluster.etcd.ssl.keyfile",
        ),
        (
            vec![("ssl.cacertfile", p(&garbage))],
            "cluster.etcd.ssl.cacertfile",
        ),
        (
            vec![
                ("ssl.certfile", p(&certs.client_cert)),
                ("ssl.keyfile", p(&certs.client_cert)),
            ],
            "cluster.etcd.ssl.keyfile",
        ),
    ] {
        let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let e = autocluster_etcd::build(&ctx(
            "emqx1@192.168.1.162",
            "emqxcl",
            section("https://127.0.0.1:2379", &settings),
        ))
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert_eq!(e.context().key.as_deref(), Some(key), "{e}");
        assert!(e.to_string().contains(key), "{e}");
    }
    // TLS files with an http:// server: refused, never silently plain text
    let ca = p(&certs.ca_cert);
    let e = autocluster_etcd::build(&ctx(
        "emqx1@192.168.1.162",
        "emqxcl",
        section("http://127.0.0.1:2379", &[("ssl.cacertfile", ca.as_str())]),
    ))
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

#[tokio::test]
async fn v2_over_tls_with_client_certificates() {
    let certs = TestCerts::generate().unwrap();
    let etcd = EtcdServer::builder()
        .v2(true)
        .tls(certs.clone())
        .start()
        .await
        .unwrap();
    let settings = |ca: &std::path::Path| {
        vec![
            ("api", "v2".to_string()),
            ("ssl.cacertfile", p(ca)),
            ("ssl.certfile", p(&certs.client_cert)),
            ("ssl.keyfile", p(&certs.client_key)),
        ]
    };
    let good = settings(&certs.ca_cert);
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = backend(&etcd, &good);
    bounded(a.register(&reg("emqx1@192.168.1.162")))
        .await
        .unwrap();
    assert_eq!(bounded(a.snapshot()).await.unwrap().members.len(), 1);

    let bad = settings(&certs.other_ca_cert);
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let e = bounded(backend(&etcd, &bad).snapshot()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(e.to_string().contains("trusted CA"), "{e}");
}

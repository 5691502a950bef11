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

/// EMQX 4.x's etcd block as its `etc/emqx.conf` documents it, the lines uncommented, loaded
/// verbatim: `http://` servers and the `ssl.*` files.
fn emqx4_etcd_block(server: &str, ssl: &[(&str, String)]) -> String {
    let mut conf = format!(
        "node.name = emqx@127.0.0.1\n\
         cluster.name = emqxcl\n\
         cluster.discovery = etcd\n\
         ## Etcd server list, seperated by ','.\n\
         ##\n\
         ## Value: String\n\
         cluster.etcd.server = {server}\n\
         ## The prefix helps build nodes path in etcd. Each node in the cluster\n\
         ## will create a path in etcd: v2/keys/<prefix>/<cluster.name>/<node.name>\n\
         cluster.etcd.prefix = emqxcl\n\
         ## The TTL for node's path in etcd.\n\
         cluster.etcd.node_ttl = 1m\n"
    );
    for (key, path) in ssl {
        conf.push_str(&format!(
            "## Value: File\ncluster.etcd.ssl.{key} = {path}\n"
        ));
    }
    conf
}

/// Builds the backend from `conf` as the agent does: loaded, then its `cluster.etcd` section.
fn build_from_conf(conf: &str) -> autocluster_plugin::Result<()> {
    use autocluster::config::{FileFormat, Settings};
    let settings = Settings::from_str(conf, FileFormat::Conf, "emqx.conf").unwrap();
    autocluster_etcd::build(&settings.backend_context()).map(|_| ())
}

#[test]
fn emqx4_block_with_http_and_ssl_files_is_refused_with_the_fix() {
    let certs = TestCerts::generate().unwrap();
    let files = vec![
        ("keyfile", p(&certs.client_key)),
        ("certfile", p(&certs.client_cert)),
        ("cacertfile", p(&certs.ca_cert)),
    ];
    // as shipped (the files exist), and with EMQX's relative paths that do not exist here:
    // either way the scheme is what is wrong, and the message says both ways out
    let missing = vec![
        ("keyfile", "etc/certs/client-key.pem".to_string()),
        ("certfile", "etc/certs/client.pem".to_string()),
        ("cacertfile", "etc/certs/ca.pem".to_string()),
    ];
    for ssl in [&files, &missing, &files[2..].to_vec()] {
        let conf = emqx4_etcd_block("http://127.0.0.1:2379", ssl);
        let e = build_from_conf(&conf).unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.kind(), ErrorKind::Config, "{msg}");
        assert_eq!(e.context().key.as_deref(), Some("cluster.etcd.server"));
        assert!(
            msg.starts_with("emqx.conf:7: cluster.etcd.server = http://127.0.0.1:2379: "),
            "{msg}"
        );
        for fix in [
            "TLS is never dropped silently",
            "https://",
            "remove the cluster.etcd.ssl.* lines",
        ] {
            assert!(msg.contains(fix), "no {fix:?} in: {msg}");
        }
        for (key, _) in ssl.iter() {
            assert!(
                msg.contains(&format!("cluster.etcd.ssl.{key} (emqx.conf:")),
                "{msg}"
            );
        }
    }
    // each fix works
    build_from_conf(&emqx4_etcd_block("https://127.0.0.1:2379", &files)).unwrap();
    build_from_conf(&emqx4_etcd_block("http://127.0.0.1:2379", &[])).unwrap();
}

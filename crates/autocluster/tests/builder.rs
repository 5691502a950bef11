//! `Cluster::builder`: the configuration's labels and endpoints with the application's over
//! them, the first bad value the error of `start`, and `update_metadata` refused where no
//! backend carries metadata to peers.

use autocluster::{Cluster, ErrorKind, Settings};

fn settings() -> Settings {
    Settings::from_pairs([
        ("node.name", "b@127.0.0.1"),
        ("cluster.discovery", "manual"),
        ("node.labels.zone", "eu-1"),
        ("node.labels.role", "core"),
        ("node.advertise.mqtt", "10.0.0.5:1883"),
    ])
    .unwrap()
}

#[tokio::test]
async fn the_builder_adds_to_the_configuration_and_refuses_the_first_bad_value() {
    let builder = Cluster::builder(&settings())
        .label("role", "api")
        .endpoint("grpc", "[::1]:50051")
        .version("myapp 2.1.0");
    let meta = builder.metadata().clone();
    assert_eq!(meta.labels.get("zone").map(String::as_str), Some("eu-1"));
    assert_eq!(meta.labels.get("role").map(String::as_str), Some("api"));
    assert_eq!(meta.endpoints.len(), 2);
    assert_eq!(meta.version.as_deref(), Some("myapp 2.1.0"));
    let cluster = builder.start().await.unwrap();
    assert_eq!(cluster.metadata().labels, meta.labels);
    assert_eq!(cluster.metadata().endpoints, meta.endpoints);

    // manual: nobody would hear of an update.
    let e = cluster
        .update_metadata(|m| {
            m.labels.insert("state".into(), "draining".into());
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    cluster.leave().await.unwrap();

    let e = Cluster::builder(&settings())
        .label("Bad", "x")
        .endpoint("grpc", "nohost")
        .start()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string().starts_with("label key Bad: expected a name"),
        "{e}"
    );

    let e = Cluster::builder(&settings())
        .endpoint("grpc", "nohost")
        .start()
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("endpoint grpc = nohost: expected host:port"),
        "{e}"
    );

    let e = Cluster::builder(&settings())
        .version("v\n1")
        .start()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("version v\\n1"), "{e}");

    // More than the backend carries (64 KiB of JSON), refused at start with the figures.
    let mut big = Cluster::builder(&settings());
    for i in 0..300 {
        big = big.label(format!("k{i}"), "v".repeat(250));
    }
    let e = big.start().await.unwrap_err();
    assert!(e.to_string().contains("carries at most 65536"), "{e}");
}

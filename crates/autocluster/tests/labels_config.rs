//! `node.labels.<key>` and `node.advertise.<name>`: the same labels and endpoints from the
//! `.conf`, TOML, YAML and environment forms, and every bad one refused with its place, key
//! and expected form.

use std::collections::BTreeMap;

use autocluster::config::{FileFormat, Settings};

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_form_gives_the_same_labels_and_endpoints() {
    let conf = "node.name = a@127.0.0.1\nnode.labels.zone = eu-1\nnode.labels.role = core\n\
                node.advertise.mqtt = 10.0.0.5:1883\nnode.advertise.grpc = [::1]:50051\n";
    let toml = "[node]\nname = \"a@127.0.0.1\"\n[node.labels]\nzone = \"eu-1\"\nrole = \"core\"\n\
                [node.advertise]\nmqtt = \"10.0.0.5:1883\"\ngrpc = \"[::1]:50051\"\n";
    let yaml = "node:\n  name: a@127.0.0.1\n  labels:\n    zone: eu-1\n    role: core\n  \
                advertise:\n    mqtt: \"10.0.0.5:1883\"\n    grpc: \"[::1]:50051\"\n";
    let labels = map(&[("zone", "eu-1"), ("role", "core")]);
    let endpoints = map(&[("mqtt", "10.0.0.5:1883"), ("grpc", "[::1]:50051")]);
    for (text, format) in [
        (conf, FileFormat::Conf),
        (toml, FileFormat::Toml),
        (yaml, FileFormat::Yaml),
    ] {
        let s = Settings::from_str(text, format, "node").unwrap();
        assert_eq!(s.labels, labels, "{format:?}");
        assert_eq!(s.endpoints, endpoints, "{format:?}");
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.conf");
    std::fs::write(&path, "node.name = a@127.0.0.1\nnode.labels.zone = eu-1\n").unwrap();
    let env = [
        ("AUTOCLUSTER_NODE__LABELS__ZONE", "eu-2"),
        ("AUTOCLUSTER_NODE__LABELS__ROLE", "core"),
        ("AUTOCLUSTER_NODE__ADVERTISE__MQTT", "broker1:1883"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let s = Settings::load_with_env(&path, env).unwrap();
    assert_eq!(s.labels, map(&[("zone", "eu-2"), ("role", "core")]));
    assert_eq!(s.endpoints, map(&[("mqtt", "broker1:1883")]));
    let rendered = s.render();
    assert!(
        rendered.contains("node.labels.zone = eu-2")
            && rendered.contains("environment variable AUTOCLUSTER_NODE__LABELS__ZONE"),
        "{rendered}"
    );
}

#[test]
fn bad_labels_and_endpoints_are_refused_with_place_key_and_form() {
    let cases = [
        (
            "node.labels.Zone = eu-1",
            "node.conf:2: node.labels.Zone = eu-1: the label key \"Zone\": expected a name of 1 to 63",
        ),
        (
            "node.labels.zone = a\u{1b}[31m",
            "node.conf:2: node.labels.zone = a\\u{1b}[31m: the value has a control character",
        ),
        (
            "node.advertise.mqtt = 10.0.0.5",
            "node.conf:2: node.advertise.mqtt = 10.0.0.5: expected host:port",
        ),
        (
            "node.advertise.mqtt = 10.0.0.5:0",
            "node.conf:2: node.advertise.mqtt = 10.0.0.5:0: the port \"0\" is not 1 to 65535",
        ),
        (
            "node.advertise.-x = h:1",
            "node.conf:2: node.advertise.-x = h:1: the endpoint name \"-x\": expected a name",
        ),
    ];
    for (line, expected) in cases {
        let text = format!("node.name = a@127.0.0.1\n{line}\n");
        let e = Settings::from_str(&text, FileFormat::Conf, "node.conf").expect_err(line);
        let shown = e.to_string();
        assert!(
            shown.starts_with(expected),
            "{line}:\n got {shown}\nwant {expected}"
        );
    }
    let long = format!(
        "node.name = a@127.0.0.1\nnode.labels.k = {}\n",
        "v".repeat(257)
    );
    let e = Settings::from_str(&long, FileFormat::Conf, "node.conf").unwrap_err();
    assert!(e.to_string().contains("the value is 257 bytes"), "{e}");
}

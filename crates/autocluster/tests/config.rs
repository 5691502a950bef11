//! The configuration loader, from a user's side: EMQX `.conf` files load verbatim, TOML, YAML
//! and environment overrides give the same settings, and every bad input is refused with a
//! located message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use autocluster::config::{known_keys, FileFormat, Settings};
use autocluster::plugin::{ErrorKind, Origin};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn conf(text: &str) -> Result<Settings, autocluster::ConfigError> {
    Settings::from_str(text, FileFormat::Conf, "node.conf")
}

/// The single problem `text` is refused with.
fn refused(text: &str) -> String {
    let e = conf(text).expect_err("must be refused");
    assert_eq!(e.problems().len(), 1, "{e}");
    e.to_string()
}

fn line_of(path: &Path, starts_with: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .position(|l| l.trim_start().starts_with(starts_with))
        .unwrap_or_else(|| panic!("{starts_with:?} not in {}", path.display()))
        + 1
}

fn file(path: &Path, line: usize) -> Origin {
    Origin::File {
        path: path.display().to_string(),
        line,
    }
}

#[test]
fn the_seed_block_loads_verbatim_with_its_comments() {
    let path = fixture("seed.conf");
    let s = Settings::load_with_env(&path, []).unwrap();
    assert_eq!(s.node.as_str(), "emqx1@192.168.1.162");
    assert_eq!(s.discovery, "etcd");
    assert_eq!(s.source.as_deref(), Some(path.as_path()));
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert!(s.no_effect.is_empty());

    let etcd = s.section("cluster.etcd");
    assert_eq!(etcd.prefix(), "cluster.etcd");
    assert_eq!(etcd.str("server"), Some("http://192.168.1.162:2379"));
    assert_eq!(etcd.str("prefix"), Some("emqxcl"));
    assert_eq!(
        etcd.duration("node_ttl").unwrap(),
        Some(Duration::from_secs(60))
    );
    assert_eq!(etcd.get("server").unwrap().origin, file(&path, 6));
    assert_eq!(etcd.get("node_ttl").unwrap().origin, file(&path, 10));
    assert_eq!(s.get("cluster.discovery").unwrap().origin, file(&path, 4));
    assert_eq!(s.get("node.name").unwrap().origin, file(&path, 11));
    // defaults fill the rest of the section
    assert_eq!(etcd.str("api"), Some("v3"));
    assert_eq!(etcd.get("api").unwrap().origin, Origin::Default);

    let ctx = s.backend_context();
    assert_eq!(ctx.cluster, "emqxcl");
    assert_eq!(ctx.section.str("server"), Some("http://192.168.1.162:2379"));
}

#[test]
fn a_full_emqx_conf_loads_with_warnings_for_the_applications_keys() {
    let path = fixture("emqx.conf");
    let s = Settings::load_with_env(&path, []).unwrap();
    assert_eq!(s.node.as_str(), "emqx@127.0.0.1");
    assert_eq!(s.discovery, "etcd");
    assert_eq!(
        s.section("cluster.etcd").list("server"),
        vec!["http://127.0.0.1:2379", "http://127.0.0.2:2379"]
    );

    let warned = |key: &str| {
        let line = line_of(&path, &format!("{key} ="));
        let want = format!(
            "{}:{line}: {key} is not an autocluster key, left to the application",
            path.display()
        );
        assert!(
            s.warnings.contains(&want),
            "no {want:?} in {:#?}",
            s.warnings
        );
    };
    // a key that is both a value and a table, and both halves are kept apart
    warned("listener.tcp.external");
    warned("listener.tcp.external.acceptors");
    warned("node.max_ports");
    warned("mqtt.max_packet_size");
    warned("allow_anonymous");
    warned("bridge.mqtt.aws.forwards");
    assert!(
        s.warnings.iter().all(|w| !w.contains("did you mean")),
        "{:#?}",
        s.warnings
    );

    let ignored: Vec<&str> = s
        .no_effect
        .iter()
        .filter_map(|l| l.split(": ").nth(1))
        .collect();
    for key in [
        "cluster.autoheal = on",
        "cluster.autoclean = 5m",
        "cluster.proto_dist = inet_tcp",
        "cluster.etcd.ssl.verify = verify_peer",
        "cluster.k8s.apiserver = http://10.110.111.204:8080",
        "cluster.k8s.namespace = default",
    ] {
        assert!(ignored.contains(&key), "{key} not in {:#?}", s.no_effect);
    }
    assert!(s.render().contains("cluster.autoheal = on"));
}

#[test]
fn toml_and_yaml_give_the_same_settings() {
    let conf = Settings::load_with_env(fixture("seed.conf"), []).unwrap();
    for name in ["seed.toml", "seed.yaml"] {
        let path = fixture(name);
        let other = Settings::load_with_env(&path, []).unwrap();
        assert_eq!(other.node, conf.node, "{name}");
        assert_eq!(other.discovery, conf.discovery, "{name}");
        let raw = |s: &Settings| -> Vec<(String, String)> {
            s.iter()
                .map(|(k, v)| (k.to_string(), v.raw.clone()))
                .collect()
        };
        assert_eq!(raw(&other), raw(&conf), "{name}");
        let line = line_of(&path, "node_ttl");
        assert_eq!(
            other.get("cluster.etcd.node_ttl").unwrap().origin,
            file(&path, line),
            "{name}"
        );
    }
}

#[test]
fn errors_in_toml_and_yaml_name_their_line() {
    let e = Settings::from_str(
        "[node]\nname = \"a@b\"\n[cluster.etcd]\nnode_ttl = \"1x\"\n",
        FileFormat::Toml,
        "node.toml",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "node.toml:4: cluster.etcd.node_ttl = 1x: expected a duration such as 500ms, 30s, 1m or 2h"
    );
    let e = Settings::from_str(
        "node:\n  name: a@b\ncluster:\n  etcd:\n    prefx: x\n",
        FileFormat::Yaml,
        "node.yaml",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "node.yaml:5: unknown key cluster.etcd.prefx; did you mean cluster.etcd.prefix?"
    );
    let e = Settings::from_str("[node\nname = 1\n", FileFormat::Toml, "node.toml").unwrap_err();
    assert!(
        e.to_string().starts_with("node.toml:1: invalid TOML"),
        "{e}"
    );
}

#[test]
fn environment_overrides_the_file() {
    let path = fixture("seed.conf");
    let env = [
        ("AUTOCLUSTER_CLUSTER__ETCD__PREFIX", "fromenv"),
        ("AUTOCLUSTER_CLUSTER__ETCD__LOCK_TIMEOUT", "5s"),
        ("AUTOCLUSTER_NODE__ADMIN_LISTEN", "127.0.0.1:9090"),
        ("AUTOCLUSTER_LOG", "debug"), // a CLI's own variable: not a key, not a warning
        // What `agent --on-change` sets for its hooks: no key either, whatever the name.
        ("AUTOCLUSTER_NODE", "emqx2@127.0.0.2"),
        ("AUTOCLUSTER_CLUSTER", "emqxcl"),
        ("PATH", "/usr/bin"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let s = Settings::load_with_env(&path, env).unwrap();
    let prefix = s.get("cluster.etcd.prefix").unwrap();
    assert_eq!(prefix.raw, "fromenv");
    assert_eq!(
        prefix.origin,
        Origin::Env {
            var: "AUTOCLUSTER_CLUSTER__ETCD__PREFIX".into()
        }
    );
    assert_eq!(
        s.section("cluster.etcd").duration("lock_timeout").unwrap(),
        Some(Duration::from_secs(5))
    );
    assert_eq!(s.admin_listen, "127.0.0.1:9090".parse().unwrap());
    assert_eq!(s.get("cluster.etcd.node_ttl").unwrap().raw, "1m"); // untouched
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert!(s
        .render()
        .contains("(environment variable AUTOCLUSTER_CLUSTER__ETCD__PREFIX)"));
}

#[test]
fn environment_errors_name_the_variable() {
    let env = [
        ("AUTOCLUSTER_CLUSTER__ETCD__NODE_TTL", "1x"),
        ("AUTOCLUSTER_CLUSTER__ETCD__PREFX", "x"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let e = Settings::load_with_env(fixture("seed.conf"), env).unwrap_err();
    assert_eq!(
        e.problems(),
        [
            "environment variable AUTOCLUSTER_CLUSTER__ETCD__NODE_TTL: cluster.etcd.node_ttl = 1x: expected a duration such as 500ms, 30s, 1m or 2h",
            "environment variable AUTOCLUSTER_CLUSTER__ETCD__PREFX: unknown key cluster.etcd.prefx; did you mean cluster.etcd.prefix?",
        ]
    );
}

#[test]
fn load_reads_the_process_environment() {
    // The only test that touches the process environment.
    std::env::set_var("AUTOCLUSTER_CLUSTER__NAME", "envcl");
    let s = Settings::load(fixture("seed.conf")).unwrap();
    std::env::remove_var("AUTOCLUSTER_CLUSTER__NAME");
    assert_eq!(s.cluster_name, "envcl");
    let e = Settings::load("/nonexistent/node.conf").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/node.conf: cannot read the configuration file"),
        "{e}"
    );
}

#[test]
fn defaults() {
    let s = conf("node.name = emqx1@10.0.0.1\n").unwrap();
    assert_eq!(s.cookie, "emqxsecretcookie");
    assert_eq!(s.cluster_name, "emqxcl");
    assert_eq!(s.discovery, "manual");
    assert_eq!(s.admin_listen, "127.0.0.1:8070".parse().unwrap());
    assert_eq!(s.listen, None);
    assert_eq!(s.call_timeout, Duration::from_secs(5));
    assert_eq!(s.backoff_min, Duration::from_millis(500));
    assert_eq!(s.backoff_max, Duration::from_secs(30));
    assert_eq!(s.grace, None);
    assert_eq!(s.probe_interval, Duration::from_secs(5));
    let etcd = s.section("cluster.etcd");
    assert_eq!(etcd.str("prefix"), Some("emqxcl"));
    assert_eq!(etcd.str("node_ttl"), Some("1m"));
    assert_eq!(etcd.str("lock_timeout"), Some("30s"));
    assert_eq!(etcd.str("server"), None);
    let mcast = s.section("cluster.mcast");
    assert_eq!(mcast.str("addr"), Some("239.192.0.1"));
    assert_eq!(mcast.list("ports"), vec!["4369"]);
    assert_eq!(mcast.str("iface"), Some("0.0.0.0"));
    assert_eq!(mcast.parse::<u8>("ttl", "a ttl").unwrap(), Some(255));
    assert_eq!(mcast.bool("loop").unwrap(), Some(true));
    assert_eq!(
        mcast.duration("heartbeat").unwrap(),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        mcast.duration("member_ttl").unwrap(),
        Some(Duration::from_secs(5))
    );
    let dns = s.section("cluster.dns");
    assert_eq!(dns.str("app"), Some("emqx1"));
    assert_eq!(dns.str("type"), Some("a"));
    assert_eq!(
        dns.duration("interval").unwrap(),
        Some(Duration::from_secs(10))
    );
    assert!(s.render().contains("cluster.discovery = manual"));
}

#[test]
fn optional_keys_and_aliases() {
    let s = conf(
        "node.name = n@h\nnode.listen = 127.0.0.11:4370\ncluster.grace = 2m\n\
         cluster.discovery = DNS\ncluster.dns.name = emqx.test\ncluster.dns.record_type = SRV\n",
    )
    .unwrap();
    assert_eq!(s.listen, Some("127.0.0.11:4370".parse().unwrap()));
    assert_eq!(s.grace, Some(Duration::from_secs(120)));
    assert_eq!(s.discovery, "dns"); // enums are matched case-insensitively, stored lower-case
    let dns = s.section("cluster.dns");
    assert_eq!(dns.str("type"), Some("srv"));
    assert_eq!(
        dns.error("type", "x").to_string(),
        "node.conf:6: cluster.dns.type = srv: x"
    );

    assert_eq!(
        refused("node.name = n@h\ncluster.dns.type = a\ncluster.dns.record_type = srv\n"),
        "node.conf:3: cluster.dns.record_type = srv: conflicts with cluster.dns.type = a (node.conf:2); set only one of them"
    );
}

#[test]
fn each_bad_input_is_refused_with_its_located_message() {
    assert_eq!(
        refused("node.name = n@h\n## c\n\ncluster.etcd.node_ttl = 1x\n"),
        "node.conf:4: cluster.etcd.node_ttl = 1x: expected a duration such as 500ms, 30s, 1m or 2h"
    );
    assert_eq!(
        refused("node.name = n@h\n\ncluster.etcd.prefx = x\n"),
        "node.conf:3: unknown key cluster.etcd.prefx; did you mean cluster.etcd.prefix?"
    );
    assert_eq!(
        refused("node.name = n@h\ncluster.etcd.foo = x\n"),
        "node.conf:2: unknown key cluster.etcd.foo; the cluster.etcd keys are server, prefix, node_ttl, api, username, password, lock_timeout, watch_coalesce, watch_coalesce_members"
    );
    assert_eq!(
        refused("cluster.discovery = k8s\nnode.name = n@h\n"),
        "node.conf:1: cluster.discovery = k8s: expected one of etcd, static, dns, mcast, manual"
    );
    assert_eq!(
        refused("node.name = n@h\nthis is not a setting\n"),
        "node.conf:2: expected key = value, found \"this is not a setting\""
    );
    assert_eq!(
        refused("cluster.discovery = manual\n"),
        "node.conf: node.name is required: this node's name, name@host, e.g. emqx1@192.168.1.162"
    );
    assert_eq!(
        refused("node.name = emqx1\n"),
        "node.conf:1: node.name = emqx1: invalid node name \"emqx1\": no '@'; expected name@host, e.g. emqx1@192.168.1.162"
    );
    for (discovery, key) in [
        ("etcd", "cluster.etcd.server"),
        ("static", "cluster.static.seeds"),
        ("dns", "cluster.dns.name"),
    ] {
        assert_eq!(
            refused(&format!(
                "cluster.discovery = {discovery}\nnode.name = n@h\n"
            )),
            format!("node.conf:1: {key} is required when cluster.discovery = {discovery}")
        );
    }
    assert_eq!(
        refused("node.name = n@h\ncluster.static.seeds = a@h1, b\n"),
        "node.conf:2: cluster.static.seeds = a@h1, b: invalid node name \"b\": no '@'; expected name@host, e.g. emqx1@192.168.1.162"
    );
    assert_eq!(
        refused("node.name = n@h\ncluster.etcd.server = 127.0.0.1:2379\n"),
        "node.conf:2: cluster.etcd.server = 127.0.0.1:2379: \"127.0.0.1:2379\" does not start with http:// or https://; expected a comma separated list of http:// or https:// URLs such as http://127.0.0.1:2379"
    );
    assert_eq!(
        refused("node.name = n@h\ncluster.mcast.ttl = 300\n"),
        "node.conf:2: cluster.mcast.ttl = 300: expected an integer from 0 to 255"
    );
    assert_eq!(
        refused("node.name = n@h\ncluster.mcast.loop = yes\n"),
        "node.conf:2: cluster.mcast.loop = yes: expected on or off"
    );
    assert_eq!(
        refused("node.name = n@h\nnode.admin_listen = localhost:8070\n"),
        "node.conf:2: node.admin_listen = localhost:8070: expected an IP address and port such as 127.0.0.1:8070"
    );
    assert_eq!(
        refused("node.name = n@h\ncluster.backoff_min = 1m\ncluster.backoff_max = 10s\n"),
        "node.conf:2: cluster.backoff_min = 1m: must not exceed cluster.backoff_max (10s)"
    );
}

#[test]
fn several_errors_are_all_reported_in_file_order() {
    let e = conf(
        "cluster.discovery = etcd\ncluster.etcd.prefx = x\nnot a line\nnode.name = n@h\ncluster.etcd.node_ttl = soon\n",
    )
    .unwrap_err();
    assert_eq!(
        e.problems(),
        [
            "node.conf:1: cluster.etcd.server is required when cluster.discovery = etcd",
            "node.conf:2: unknown key cluster.etcd.prefx; did you mean cluster.etcd.prefix?",
            "node.conf:3: expected key = value, found \"not a line\"",
            "node.conf:5: cluster.etcd.node_ttl = soon: expected a duration such as 500ms, 30s, 1m or 2h",
        ]
    );
    assert_eq!(e.to_string(), e.problems().join("\n"));
    let err: autocluster::Error = e.into();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[test]
fn application_keys_warn_and_suggest_when_close() {
    let s =
        conf("node.name = n@h\nnode.nam = typo\nnode.max_ports = 10\nnode.name = m@h\n").unwrap();
    assert_eq!(s.node.as_str(), "m@h"); // the last value wins, as in EMQX
    assert_eq!(
        s.warnings,
        [
            "node.conf:2: node.nam is not an autocluster key, left to the application; did you mean node.name?",
            "node.conf:3: node.max_ports is not an autocluster key, left to the application",
            "node.conf:4: node.name is set again (first at line 1); the last value wins",
        ]
    );
}

#[test]
fn secrets_never_show() {
    let s = conf(
        "node.name = n@h\nnode.cookie = c00kie-s3cret\ncluster.discovery = etcd\n\
         cluster.etcd.server = http://127.0.0.1:2379\ncluster.etcd.username = root\n\
         cluster.etcd.password = pa55-s3cret\n",
    )
    .unwrap();
    assert_eq!(s.cookie, "c00kie-s3cret");
    assert_eq!(
        s.section("cluster.etcd").str("password"),
        Some("pa55-s3cret")
    );
    for shown in [
        s.render(),
        format!("{s:?}"),
        format!("{:?}", s.section("cluster.etcd")),
        format!("{:?}", s.backend_context()),
    ] {
        assert!(!shown.contains("s3cret"), "{shown}");
    }
    let r = s.render();
    assert!(r.contains("cluster.etcd.password = ******"), "{r}");
    assert!(r.contains("node.cookie = ******"), "{r}");
    assert!(r.contains("cluster.etcd.username = root"), "{r}");
}

#[test]
fn render_shows_values_origins_and_defaults() {
    let path = fixture("seed.conf");
    let r = Settings::load_with_env(&path, []).unwrap().render();
    let line = |key: &str| {
        r.lines()
            .find(|l| l.starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("{key} not in\n{r}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("cluster.etcd.node_ttl"),
        format!("cluster.etcd.node_ttl = 1m ({}:10)", path.display())
    );
    assert_eq!(line("cluster.etcd.api"), "cluster.etcd.api = v3 (default)");
    assert_eq!(
        line("cluster.grace"),
        "cluster.grace = <unset> (default: the backend's registration TTL)"
    );
    // the chosen backend's keys only
    assert!(!r.contains("cluster.mcast.addr"), "{r}");
    assert!(!r.contains("cluster.static.seeds"), "{r}");
}

#[test]
fn programs_set_values_with_from_pairs() {
    let s = Settings::from_pairs([
        ("node.name", "p@127.0.0.1"),
        ("cluster.discovery", "static"),
        ("cluster.static.seeds", "p@127.0.0.1,q@127.0.0.2"),
    ])
    .unwrap();
    assert_eq!(s.discovery, "static");
    let seeds = s.backend_context().section;
    assert_eq!(seeds.list("seeds"), vec!["p@127.0.0.1", "q@127.0.0.2"]);
    assert_eq!(seeds.get("seeds").unwrap().origin, Origin::Program);
    assert_eq!(
        Settings::from_pairs([("node.name", "p@h"), ("cluster.discovery", "etcd")])
            .unwrap_err()
            .to_string(),
        "cluster.etcd.server is required when cluster.discovery = etcd"
    );
}

#[test]
fn the_format_follows_the_extension() {
    assert_eq!(FileFormat::from_path("a/node.toml"), FileFormat::Toml);
    assert_eq!(FileFormat::from_path("node.YAML"), FileFormat::Yaml);
    assert_eq!(FileFormat::from_path("node.yml"), FileFormat::Yaml);
    assert_eq!(FileFormat::from_path("emqx.conf"), FileFormat::Conf);
    assert_eq!(FileFormat::from_path("node"), FileFormat::Conf);
}

#[test]
fn docs_list_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let docs = std::fs::read_to_string(&path).expect("docs/configuration.md");
    for spec in known_keys() {
        assert!(
            docs.contains(&format!("`{}`", spec.key)),
            "{} is not documented in docs/configuration.md",
            spec.key
        );
    }
}

#[test]
fn absurdly_deep_input_is_refused_not_a_crash() {
    let n = 100_000;
    let dotted = vec!["a"; n].join(".");
    let arrays = format!("{}1{}", "[".repeat(n), "]".repeat(n));
    for (text, format) in [
        (format!("{dotted} = 1"), FileFormat::Conf),
        (format!("{dotted} = 1"), FileFormat::Toml),
        (format!("\"{dotted}\" = 1"), FileFormat::Toml),
        (format!("a = {arrays}"), FileFormat::Toml),
        (format!("{dotted}: 1"), FileFormat::Yaml),
        (format!("a: {arrays}"), FileFormat::Yaml),
    ] {
        assert!(
            Settings::from_str(&text, format, "deep").is_err(),
            "{format:?}"
        );
    }
    let env = [(
        format!("AUTOCLUSTER_{}", vec!["A"; n].join("__")),
        "1".to_string(),
    )];
    assert!(Settings::load_with_env(fixture("seed.conf"), env).is_ok());
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z._#= \"\\\\]{0,30}",
            "(node|cluster|listener)\\.[a-z_.]{0,20} ?= ?[ -~]{0,30}",
            "cluster\\.(etcd|dns|mcast|static)\\.[a-z_]{1,12} = [ -~]{0,20}",
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn conf_parser_and_loader(lines in proptest::collection::vec(line(), 0..20)) {
            let text = lines.join("\n");
            if let Err(e) = Settings::from_str(&text, FileFormat::Conf, "fuzz.conf") {
                for p in e.problems() {
                    prop_assert!(p.starts_with("fuzz.conf:"), "not located: {}", p);
                }
            }
        }

        /// Long sums of large terms, as `18446744073709551s` x 1,001 was: bounded, located.
        #[test]
        fn durations_of_any_size(
            terms in proptest::collection::vec((any::<u64>(), "ms|s|m|h|d"), 1..4),
            times in 1usize..1200,
        ) {
            let value = terms.iter().map(|(n, unit)| format!("{n}{unit}")).collect::<String>();
            let text = format!("node.name = n@h\ncluster.grace = {}\n", value.repeat(times));
            if let Err(e) = Settings::from_str(&text, FileFormat::Conf, "fuzz.conf") {
                prop_assert!(e.to_string().starts_with("fuzz.conf:2: cluster.grace = "), "{}", e);
            }
        }

        #[test]
        fn any_text_in_any_format(text in any::<String>()) {
            for f in [FileFormat::Conf, FileFormat::Toml, FileFormat::Yaml] {
                let _ = Settings::from_str(&text, f, "fuzz");
            }
        }
    }
}

#[test]
fn a_key_with_brackets_is_refused_not_an_abort() {
    // The `config` crate reads `a[9999999999999]` as an index into a list it then allocates:
    // these twenty bytes aborted the process.
    assert_eq!(
        refused("node.name = n@h\na[9999999999999] = 1\n"),
        "node.conf:2: expected key = value, found \"a[9999999999999]\" as the key (a key has no spaces, '#', quotes or brackets)"
    );
    for (text, format, want) in [
        (
            "\"a[9999999999999]\" = 1\n",
            FileFormat::Toml,
            "node.toml:1: malformed key \"a[9999999999999]\": a key has no brackets",
        ),
        (
            "a[9999999999999]: 1\n",
            FileFormat::Yaml,
            "node.yaml:1: malformed key \"a[9999999999999]\": a key has no brackets",
        ),
    ] {
        let name = if format == FileFormat::Toml {
            "node.toml"
        } else {
            "node.yaml"
        };
        let e = Settings::from_str(text, format, name).unwrap_err();
        assert_eq!(e.to_string(), want);
    }
    // A variable with brackets names no key: not an override, not an abort.
    let env = [(
        "AUTOCLUSTER_NODE__A[9999999999999]".to_string(),
        "1".to_string(),
    )];
    assert!(Settings::load_with_env(fixture("seed.conf"), env).is_ok());
}

#[test]
fn a_huge_duration_is_a_located_error_not_a_crash() {
    // 1,001 terms of 18446744073709551s overflowed the sum: a panic in `check` and at start.
    let huge = "18446744073709551s".repeat(1001);
    let shown = format!("{}...", &huge[..60]);
    assert_eq!(
        refused(&format!(
            "node.name = n@h\ncluster.etcd.node_ttl = {huge}\n"
        )),
        format!(
            "node.conf:2: cluster.etcd.node_ttl = {shown}: expected a duration of at most 365d"
        )
    );
    let env = [("AUTOCLUSTER_CLUSTER__GRACE".to_string(), huge.clone())];
    let e = Settings::load_with_env(fixture("seed.conf"), env).unwrap_err();
    assert_eq!(
        e.problems(),
        [format!(
            "environment variable AUTOCLUSTER_CLUSTER__GRACE: cluster.grace = {shown}: expected a duration of at most 365d"
        )]
    );
    // The bound is a whole year, and every duration key has it.
    let s = conf("node.name = n@h\ncluster.grace = 365d\n").unwrap();
    assert_eq!(s.grace, Some(Duration::from_secs(365 * 86_400)));
    assert_eq!(
        refused("node.name = n@h\ncluster.mcast.heartbeat = 366d\n"),
        "node.conf:2: cluster.mcast.heartbeat = 366d: expected a duration of at most 365d"
    );
}

#[test]
fn an_empty_cookie_is_a_located_error() {
    // It used to count as unset: the node ran on the public default cookie without a word.
    assert_eq!(
        refused("node.name = n@h\nnode.cookie =\n"),
        "node.conf:2: node.cookie: empty; expected a secret shared by every node of the cluster"
    );
    assert_eq!(
        refused("node.name = n@h\nnode.cookie = \"\"   # templated, and the template was empty\n"),
        "node.conf:2: node.cookie: empty; expected a secret shared by every node of the cluster"
    );
    let env = [("AUTOCLUSTER_NODE__COOKIE".to_string(), String::new())];
    let e = Settings::load_with_env(fixture("seed.conf"), env).unwrap_err();
    assert_eq!(
        e.problems(),
        ["environment variable AUTOCLUSTER_NODE__COOKIE: node.cookie: empty; expected a secret shared by every node of the cluster"]
    );
}

#[test]
fn a_misspelt_cookie_warns_with_the_right_key_and_leaves_the_default() {
    let s = conf(
        "node.name = n@h\nnode.cokie = s3cret\ncluster.discovery = static\n\
         cluster.static.seeds = n@h\n",
    )
    .unwrap();
    assert_eq!(
        s.warnings,
        ["node.conf:2: node.cokie is not an autocluster key, left to the application; did you mean node.cookie?"]
    );
    assert!(s.cookie_is_default());
    assert_eq!(
        s.cookie_warning().as_deref(),
        Some(
            "node.cookie is not set, so it is the public default, and cluster.discovery = static \
             authenticates peers with it: anyone who can reach this node can pass for a member; \
             set node.cookie to a secret shared by every node of the cluster"
        )
    );
}

#[test]
fn the_default_cookie_is_known_and_warned_about_where_it_authenticates() {
    let with = |extra: &str| conf(&format!("node.name = n@h\n{extra}")).unwrap();
    // Written out, the default is still the default, and the warning names its line.
    let s = with("node.cookie = emqxsecretcookie\ncluster.discovery = mcast\n");
    assert!(s.cookie_is_default());
    let w = s.cookie_warning().unwrap();
    assert!(
        w.starts_with(
            "node.conf:2: node.cookie is the public default, and cluster.discovery = mcast"
        ),
        "{w}"
    );
    assert!(!w.contains("emqxsecretcookie"), "{w}");
    let s = with("cluster.discovery = dns\ncluster.dns.name = emqx.test\n");
    assert!(s.cookie_warning().is_some());
    // etcd and manual do not authenticate peers with the cookie; a real cookie is no default.
    let s = with("cluster.discovery = etcd\ncluster.etcd.server = http://127.0.0.1:2379\n");
    assert!(s.cookie_is_default() && s.cookie_warning().is_none());
    assert!(with("").cookie_warning().is_none());
    let s = with("node.cookie = s3cret\ncluster.discovery = mcast\n");
    assert!(!s.cookie_is_default() && s.cookie_warning().is_none());
}

//! The metrics a `Cluster` registers in the application's registry: every series the docs
//! list, in a text exposition whose label values are escaped.

use std::time::Duration;

use autocluster::prometheus_client::encoding::{prometheus_text, text};
use autocluster::prometheus_client::registry::Registry;
use autocluster::{Cluster, Settings};

const SERIES: &[&str] = &[
    "autocluster_info",
    "autocluster_members",
    "autocluster_view_revision",
    "autocluster_events_total",
    "autocluster_backend_calls_total",
    "autocluster_lease_renewals_total",
    "autocluster_lease_renewal_failures_total",
    "autocluster_registrations_total",
    "autocluster_resyncs_total",
    "autocluster_watch_silences_total",
    "autocluster_task_failures_total",
    "autocluster_invalid_entries_total",
    "autocluster_last_success_timestamp_seconds",
    "autocluster_consecutive_failures",
    "autocluster_stale",
    "autocluster_ready",
];

async fn manual_cluster(dir: &tempfile::TempDir) -> Cluster {
    let conf = dir.path().join("node.conf");
    let body = "node.name = emqx1@127.0.0.1\ncluster.discovery = manual\n\
                cluster.name = \"we\\\"ird\\\\name\"\n";
    std::fs::write(&conf, body).unwrap();
    let settings = Settings::load(&conf).unwrap();
    assert_eq!(settings.cluster_name, "we\"ird\\name");
    let cluster = Cluster::start(&settings).await.unwrap();
    assert!(cluster.ready(Duration::from_secs(20)).await, "never ready");
    cluster
}

#[tokio::test]
async fn a_registry_gets_every_series_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = manual_cluster(&dir).await;
    let mut registry = Registry::default();
    cluster.register_metrics(&mut registry);

    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry).unwrap();
    for name in SERIES {
        assert!(out.contains(&format!("# TYPE {name} ")), "{name} in\n{out}");
    }
    let info = format!(
        "autocluster_info{{node=\"emqx1@127.0.0.1\",backend=\"manual\",\
         cluster=\"we\\\"ird\\\\name\",version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(out.contains(&info), "{info} in\n{out}");
    assert!(
        out.contains("autocluster_members{status=\"running\"} 1\n"),
        "{out}"
    );
    assert!(
        out.contains("autocluster_events_total{kind=\"joined\"} 1\n"),
        "{out}"
    );
    assert!(out.contains("autocluster_ready 1\n"), "{out}");
    for line in out.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(
            value.parse::<f64>().is_ok(),
            "a sample with a number: {line}"
        );
    }

    // The OpenMetrics encoder reads the same collector: counters named without `_total` in
    // their TYPE line, samples with it, and `# EOF` at the end.
    let mut open = String::new();
    text::encode(&mut open, &registry).unwrap();
    assert!(
        open.contains("# TYPE autocluster_events counter\n"),
        "{open}"
    );
    assert!(
        open.contains("autocluster_registrations_total 0\n"),
        "{open}"
    );
    assert!(open.ends_with("# EOF\n"), "{open}");
    cluster.leave().await.unwrap();
}

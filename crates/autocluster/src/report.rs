//! The status of a node as one typed report: what the agent's `GET /status` answers and what
//! `autocluster status` reads back, so that both sides share one type and one status line.

use autocluster_plugin::{NodeName, Revision};
use serde::{Deserialize, Serialize};

use crate::formation::{ForeignMember, Formation};
use crate::view::{emqx_status_line, Health, MemberEntry};
use crate::Cluster;

/// A node's view and health at one moment, in the JSON form of the agent's `/status`:
/// `{"node", "backend", "cluster", "running_nodes", "stopped_nodes", "members", "health",
/// "revision", "stale"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// This node.
    pub node: NodeName,
    /// The backend's name (`etcd`).
    pub backend: String,
    /// The cluster's name (`cluster.name`).
    pub cluster: String,
    /// The running nodes, ordered.
    pub running_nodes: Vec<NodeName>,
    /// The listed nodes that do not run, ordered.
    pub stopped_nodes: Vec<NodeName>,
    /// Every member, ordered by node name.
    pub members: Vec<MemberEntry>,
    /// The engine's health.
    pub health: Health,
    /// The backend revision the view reflects.
    pub revision: Revision,
    /// True while the view is the last known one rather than a live one.
    pub stale: bool,
    /// The formation decision, once made (`docs/formation.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formation: Option<Formation>,
    /// Why formation failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formation_error: Option<String>,
    /// Members of this cluster name that carry another cluster id: two clusters formed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_members: Vec<ForeignMember>,
}

impl StatusReport {
    /// The report of `cluster` now, named `cluster_name`.
    pub fn new(cluster: &Cluster, cluster_name: &str) -> StatusReport {
        let view = cluster.view();
        StatusReport {
            node: cluster.node().clone(),
            backend: cluster.backend_name().to_string(),
            cluster: cluster_name.to_string(),
            running_nodes: view.running_nodes(),
            stopped_nodes: view.stopped_nodes(),
            members: view.members().cloned().collect(),
            health: cluster.health(),
            revision: view.revision,
            stale: view.stale,
            formation: cluster.formation(),
            formation_error: cluster.formation_error(),
            foreign_members: cluster.foreign_members(),
        }
    }

    /// EMQX's one-line form, the same as [`crate::View::emqx_status_line`] of the view the
    /// report was made from.
    pub fn emqx_status_line(&self) -> String {
        emqx_status_line(&self.running_nodes, &self.stopped_nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::Status;
    use autocluster_plugin::{ErrorKind, Incarnation, Member};
    use std::time::{Duration, SystemTime};

    fn node(name: &str) -> NodeName {
        name.parse().unwrap()
    }

    fn health() -> Health {
        Health {
            backend: "etcd".into(),
            registered: true,
            incarnation: Some(Incarnation(0xff)),
            last_error: Some("etcd watch: down".into()),
            last_error_kind: Some(ErrorKind::Unavailable),
            last_error_at: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(7)),
            consecutive_failures: 2,
            ..Health::default()
        }
    }

    fn report() -> StatusReport {
        let entry = |name: &str, status| MemberEntry {
            member: Member::bare(node(name)),
            status,
            since: SystemTime::UNIX_EPOCH + Duration::from_millis(1_732_483_023_500),
            vanishing: false,
        };
        StatusReport {
            node: node("a@h"),
            backend: "etcd".into(),
            cluster: "emqxcl".into(),
            running_nodes: vec![node("a@h")],
            stopped_nodes: vec![node("b@h")],
            members: vec![entry("a@h", Status::Running), entry("b@h", Status::Stopped)],
            health: health(),
            revision: Revision(7),
            stale: false,
            formation: None,
            formation_error: None,
            foreign_members: Vec::new(),
        }
    }

    #[test]
    fn the_json_keeps_the_field_names_of_health_and_reads_back() {
        let report = report();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["health"], serde_json::to_value(health()).unwrap());
        assert_eq!(json["health"]["incarnation"], "ff", "a hex string");
        assert_eq!(json["health"]["last_error_kind"], "unavailable");
        assert_eq!(json["members"][0]["since"], 1_732_483_023_500u64);
        assert_eq!(json["members"][1]["status"], "stopped");
        assert_eq!(json["running_nodes"], serde_json::json!(["a@h"]));
        assert_eq!(json["revision"], 7);
        let back: StatusReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn the_status_line_is_the_views() {
        assert_eq!(
            report().emqx_status_line(),
            "Cluster status: [{running_nodes,['a@h']},{stopped_nodes,['b@h']}]"
        );
    }

    #[test]
    fn a_bad_node_name_or_a_missing_field_is_refused() {
        let mut json = serde_json::to_value(report()).unwrap();
        json["health"].as_object_mut().unwrap().remove("registered");
        let err = serde_json::from_value::<StatusReport>(json).unwrap_err();
        assert!(err.to_string().contains("registered"), "{err}");
        let mut json = serde_json::to_value(report()).unwrap();
        json["node"] = serde_json::json!("no at sign");
        assert!(serde_json::from_value::<StatusReport>(json).is_err());
    }
}

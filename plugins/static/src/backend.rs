//! The backend: every seed, every time.

use autocluster_plugin::{
    async_trait, Capabilities, Discovery, Member, Result, Revision, Snapshot,
};

use crate::config::{StaticConfig, DEFAULT_INTERVAL};

/// Lists the configured seeds as candidates; nothing to register, nothing that changes.
#[derive(Debug, Clone)]
pub struct StaticDiscovery {
    config: StaticConfig,
}

impl StaticDiscovery {
    /// A backend over validated settings.
    pub fn new(config: StaticConfig) -> Self {
        StaticDiscovery { config }
    }

    /// The settings it was built from.
    pub fn config(&self) -> &StaticConfig {
        &self.config
    }
}

#[async_trait]
impl Discovery for StaticDiscovery {
    fn name(&self) -> &'static str {
        crate::NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::poll(DEFAULT_INTERVAL).with_candidates_only()
    }

    /// Every seed (this node too, when listed) as a bare member, at revision 1: the list
    /// never changes while the process runs.
    async fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            members: self
                .config
                .seeds
                .iter()
                .cloned()
                .map(Member::bare)
                .collect(),
            revision: Revision(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use autocluster_plugin::{
        BackendContext, ErrorKind, Lease, NodeName, Origin, Registration, Section,
    };

    use super::*;
    use autocluster_plugin::{Registrations, ViewMode};
    use std::time::Duration;

    fn ctx(seeds: &str) -> BackendContext {
        let mut section = Section::new("cluster.static");
        section.set("seeds", seeds, Origin::Program);
        BackendContext::new(
            NodeName::parse("emqx1@127.0.0.11").unwrap(),
            "emqxcl",
            section,
        )
        .with_cookie("secret")
    }

    #[tokio::test]
    async fn snapshot_lists_every_seed_including_this_node() {
        let b = crate::build(&ctx("emqx1@127.0.0.11,emqx2@127.0.0.12 emqx3@node3.test")).unwrap();
        let snap = b.snapshot().await.unwrap();
        let names: Vec<&str> = snap.members.iter().map(|m| m.node.as_str()).collect();
        assert_eq!(
            names,
            ["emqx1@127.0.0.11", "emqx2@127.0.0.12", "emqx3@node3.test"]
        );
        assert!(snap
            .members
            .iter()
            .all(|m| *m == Member::bare(m.node.clone())));
        assert_eq!(snap.revision, Revision(1));
        assert_eq!(b.snapshot().await.unwrap(), snap, "the list never changes");
    }

    #[tokio::test]
    async fn declares_a_polled_candidate_list_without_registration_or_lock() {
        let b = crate::build(&ctx("emqx2@127.0.0.12")).unwrap();
        assert_eq!(b.name(), "static");
        let caps = b.capabilities();
        assert!(caps.candidates_only);
        assert!(!caps.lock);
        assert_eq!(caps.registration, Registrations::None);
        assert!(matches!(caps.view, ViewMode::Poll { interval } if interval > Duration::ZERO));
        assert!(caps.keep_alive_every < caps.ttl);

        // Registration primitives are accepted no-ops; a lock is refused as unsupported.
        let reg = Registration {
            node: NodeName::parse("emqx1@127.0.0.11").unwrap(),
            meta: Default::default(),
        };
        let lease = b.register(&reg).await.unwrap();
        b.keep_alive(&lease).await.unwrap();
        b.deregister(&lease).await.unwrap();
        let e = b
            .lock(
                &Lease {
                    id: 0,
                    ttl: caps.ttl,
                    age: Duration::ZERO,
                },
                Duration::from_secs(1),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }

    #[test]
    fn build_refuses_a_bad_seed() {
        let e = crate::build(&ctx("emqx2@127.0.0.12, not a node")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("cluster.static.seeds"), "{e}");
    }
}

//! `cluster.discovery` -> a backend. `cfg` appears here and nowhere else: a backend that was
//! compiled out is still known, so the user is told which feature to enable.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use autocluster_plugin::{
    Capabilities, Discovery, Error, ErrorKind, Member, NodeName, Result, Revision, Snapshot,
};

use crate::config::Settings;

/// Every backend autocluster knows, compiled in or not, with the cargo feature that brings it.
pub const KNOWN_BACKENDS: &[(&str, Option<&str>)] = &[
    ("etcd", Some("etcd")),
    ("static", Some("static")),
    ("dns", Some("dns")),
    ("mcast", Some("mcast")),
    ("manual", None),
];

/// Whether this build includes `backend`.
pub fn is_compiled_in(backend: &str) -> bool {
    compiled_backends().contains(&backend)
}

/// The backends this build includes, in the order of [`KNOWN_BACKENDS`].
pub fn compiled_backends() -> Vec<&'static str> {
    const COMPILED: &[(&str, bool)] = &[
        ("etcd", cfg!(feature = "etcd")),
        ("static", cfg!(feature = "static")),
        ("dns", cfg!(feature = "dns")),
        ("mcast", cfg!(feature = "mcast")),
        ("manual", true),
    ];
    COMPILED
        .iter()
        .filter(|(_, included)| *included)
        .map(|(name, _)| *name)
        .collect()
}

/// Builds the backend `settings` name. No network I/O: backends connect on first use.
pub fn build_backend(settings: &Settings) -> Result<Arc<dyn Discovery>> {
    let name = settings.discovery.as_str();
    let ctx = settings.backend_context();
    match name {
        "manual" => Ok(Arc::new(Manual {
            node: settings.node.clone(),
        })),
        #[cfg(feature = "etcd")]
        "etcd" => autocluster_etcd::build(&ctx),
        #[cfg(feature = "static")]
        "static" => autocluster_static::build(&ctx),
        #[cfg(feature = "dns")]
        "dns" => autocluster_dns::build(&ctx),
        #[cfg(feature = "mcast")]
        "mcast" => autocluster_mcast::build(&ctx),
        other => {
            let _ = &ctx;
            Err(refuse(settings, other))
        }
    }
}

fn refuse(settings: &Settings, name: &str) -> Error {
    let at = settings
        .get("cluster.discovery")
        .map(|s| format!("{}: ", s.origin))
        .unwrap_or_default();
    let message = match KNOWN_BACKENDS.iter().find(|(n, _)| *n == name) {
        Some((_, Some(feature))) => format!(
            "{at}cluster.discovery = {name} requires the \"{feature}\" feature of autocluster; \
             this build includes: {}",
            compiled_backends().join(", ")
        ),
        _ => format!(
            "{at}cluster.discovery = {name}: unknown backend; autocluster knows {}; this build \
             includes: {}",
            KNOWN_BACKENDS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
            compiled_backends().join(", ")
        ),
    };
    Error::new(ErrorKind::Config, message).with_key("cluster.discovery")
}

/// `cluster.discovery = manual`: no discovery; the view is this node alone.
#[derive(Debug)]
struct Manual {
    node: NodeName,
}

#[async_trait]
impl Discovery for Manual {
    fn name(&self) -> &'static str {
        "manual"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::poll(Duration::from_secs(3600)).with_ttl(Duration::from_secs(3600))
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            members: vec![Member::bare(self.node.clone())],
            revision: Revision(1),
        })
    }
}

//! `Cluster::leave` says whether the deregistration was taken: `Ok` when it was, an error
//! naming the backend's answer when the backend was down.

use std::time::Duration;

use autocluster::{Cluster, EngineConfig, ErrorKind};
use autocluster_plugin::{Metadata, NodeName, Registration};
use autocluster_testkit::memory::MemoryServer;

const TTL: Duration = Duration::from_secs(9);
const PATIENCE: Duration = Duration::from_secs(120);

fn config(node: &str) -> EngineConfig {
    let node = NodeName::parse(node).unwrap();
    let mut c = EngineConfig::new(Registration {
        node: node.clone(),
        meta: Metadata::of(node),
    });
    c.call_timeout = Duration::from_secs(2);
    c
}

#[tokio::test(start_paused = true)]
async fn leave_reports_a_deregistration_the_backend_did_not_take() {
    let server = MemoryServer::new();
    let a = Cluster::with_backend(server.backend(TTL), config("a@127.0.0.1"));
    let b = Cluster::with_backend(server.backend(TTL), config("b@127.0.0.1"));
    assert!(a.ready(PATIENCE).await && b.ready(PATIENCE).await);

    a.leave().await.expect("a deregistration the backend took");
    assert!(!server.nodes().iter().any(|n| n.as_str() == "a@127.0.0.1"));

    server.set_down(true);
    let e = b.leave().await.expect_err("the backend is down");
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(
        e.to_string()
            .contains("b@127.0.0.1 left, but could not deregister"),
        "{e}"
    );
    server.set_down(false);
    assert!(server.nodes().iter().any(|n| n.as_str() == "b@127.0.0.1"));
    // Asked again, the engine is already stopped: nothing more to report.
    assert!(b.leave().await.is_ok());
}

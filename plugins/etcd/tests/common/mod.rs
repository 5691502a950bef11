//! Helpers shared by the etcd backend's integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use autocluster_plugin::{
    BackendContext, Discovery, Metadata, NodeName, Origin, Registration, Result, Section,
};
use autocluster_testkit::fixtures::etcd::EtcdServer;

/// Generous bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn node(s: &str) -> NodeName {
    NodeName::parse(s).unwrap()
}

pub fn section(server: &str, extra: &[(&str, &str)]) -> Section {
    let mut s = Section::new("cluster.etcd");
    s.set("server", server, Origin::Program);
    for (k, v) in extra {
        s.set(*k, *v, Origin::Program);
    }
    s
}

pub fn ctx(node_name: &str, cluster: &str, section: Section) -> BackendContext {
    BackendContext::new(node(node_name), cluster.to_string(), section).with_cookie("cookie")
}

/// A backend for `node_name` in cluster `emqxcl` against `etcd`.
pub fn backend(etcd: &EtcdServer, extra: &[(&str, &str)]) -> Arc<dyn Discovery> {
    autocluster_etcd::build(&ctx(
        "emqx1@192.168.1.162",
        "emqxcl",
        section(&etcd.endpoint(), extra),
    ))
    .unwrap()
}

pub fn reg(name: &str) -> Registration {
    let node = node(name);
    Registration {
        meta: Metadata::of(node.clone())
            .with_addrs(vec!["127.0.0.1:4370".into()])
            .with_version("1.0"),
        node,
    }
}

/// Bounds a call the way the engine does.
pub async fn bounded<T>(f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(WAIT, f)
        .await
        .expect("a backend call did not finish within its bound")
}

/// Retries `f` every 50 ms until it returns `Some`, for at most [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next item of a watch that is not a progress notice (a batch without changes, as the
/// one announcing the watch is up): a batch with changes, or an error. Bounded; panics when
/// the watch ends.
pub async fn next_changes(
    watch: &mut autocluster_plugin::BoxStream<Result<autocluster_plugin::WatchBatch>>,
) -> Result<autocluster_plugin::WatchBatch> {
    use futures::StreamExt;
    bounded(async {
        loop {
            match watch.next().await {
                Some(Ok(b)) if b.changes.is_empty() => continue,
                Some(item) => return item,
                None => panic!("the watch ended"),
            }
        }
    })
    .await
}

/// What the code under test logs, captured on this thread (run the test on a
/// current-thread runtime, `#[tokio::test]`'s default, so spawned tasks log here too).
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// Captures from now until the guard drops.
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits until `watch` is established (its first batch), then drains it in the background
/// until it ends or errs, so what it logs is logged.
pub async fn drain(
    mut watch: autocluster_plugin::BoxStream<Result<autocluster_plugin::WatchBatch>>,
) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt;
    let up = bounded(async { watch.next().await.expect("the watch ended") }).await;
    assert!(up.is_ok_and(|b| b.changes.is_empty()));
    tokio::spawn(async move { while let Some(Ok(_)) = watch.next().await {} })
}

//! The feeder of a tonic balance channel (cargo feature `tonic`).

use autocluster_plugin::NodeName;
use tokio::sync::mpsc;

use tonic::transport::channel::Change as TonicChange;
use tonic::transport::Endpoint;

use super::{feed_mapped, Change, Discover, Feed};
use crate::Cluster;

/// Keeps a tonic `Channel::balance_channel` on the running members of `cluster` that
/// advertise the endpoint `name` (`host:port`, reached over plain HTTP/2 as
/// `http://host:port`). For TLS or settings of your own, use [`feed_balance_channel_with`].
pub fn feed_balance_channel(
    cluster: &Cluster,
    name: &str,
    tx: mpsc::Sender<TonicChange<NodeName, Endpoint>>,
) -> Feed {
    let http = |_: &NodeName, addr: &str| Endpoint::from_shared(format!("http://{addr}")).ok();
    feed_balance_channel_with(cluster, name, http, tx)
}

/// [`feed_balance_channel`] with the `Endpoint` of each member built by `make(node,
/// host_port)` (`https://`, a TLS configuration, timeouts); a member it returns `None` for is
/// left out.
pub fn feed_balance_channel_with<F>(
    cluster: &Cluster,
    name: &str,
    make: F,
    tx: mpsc::Sender<TonicChange<NodeName, Endpoint>>,
) -> Feed
where
    F: FnMut(&NodeName, &str) -> Option<Endpoint> + Send + 'static,
{
    let discover = Discover::new(cluster, name, make);
    feed_mapped(discover, tx, |change| match change {
        Change::Insert(node, endpoint) => TonicChange::Insert(node, endpoint),
        Change::Remove(node) => TonicChange::Remove(node),
    })
}

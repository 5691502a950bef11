//! The feeder of a tonic balance channel (cargo feature `tonic`).

use autocluster_plugin::NodeName;
use tokio::sync::mpsc;

use super::{feed, Change, Discover, Feed};
use crate::Cluster;

/// Keeps a tonic `Channel::balance_channel` on the running members of `cluster` that
/// advertise the endpoint `name` (`host:port`, reached over plain HTTP/2 as
/// `http://host:port`). For TLS or endpoint settings of your own, use [`feed`] with
/// [`Discover::new`] and a `make` that builds the `Endpoint`.
pub fn feed_balance_channel(
    cluster: &Cluster,
    name: &str,
    tx: mpsc::Sender<Change<NodeName, tonic::transport::Endpoint>>,
) -> Feed {
    let discover = Discover::new(cluster, name, |_, addr| {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()
    });
    feed(discover, tx)
}

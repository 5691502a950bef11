//! gRPC servers that are autocluster members advertising the endpoint `grpc`, and a client
//! whose channel is balanced over the running ones by
//! `autocluster::tower::feed_balance_channel`: a server that joins gets requests, one that
//! leaves gets no more.

use std::net::SocketAddr;

use autocluster::tower::Feed;
use autocluster::{Cluster, Settings};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// The code generated from `proto/whoami.proto`.
#[allow(missing_docs)]
pub mod pb {
    tonic::include_proto!("whoami");
}

use pb::whoami_client::WhoamiClient;
use pb::whoami_server::{Whoami, WhoamiServer};
use pb::{WhoReply, WhoRequest};

/// The name of the endpoint the servers advertise and the client balances over.
pub const ENDPOINT: &str = "grpc";

/// Joins the cluster of `settings`, advertising the endpoint `grpc` at `grpc`.
pub async fn join(settings: &Settings, grpc: SocketAddr) -> autocluster::plugin::Result<Cluster> {
    // Every setting of the file, and this server's endpoint advertised as `grpc` (the same as
    // `node.advertise.grpc = host:port` in the configuration).
    Cluster::builder(settings)
        .endpoint(ENDPOINT, grpc.to_string())
        .version(env!("CARGO_PKG_VERSION"))
        .start()
        .await
}

/// A channel balanced over the running members that advertise `grpc`, and the task that
/// keeps it so (drop it and the channel stops following the cluster).
pub fn balanced_client(cluster: &Cluster) -> (WhoamiClient<Channel>, Feed) {
    let (channel, tx) = Channel::balance_channel(16);
    let feed = autocluster::tower::feed_balance_channel(cluster, ENDPOINT, tx);
    (WhoamiClient::new(channel), feed)
}

/// Answers `Who` with this node's name.
#[derive(Debug)]
struct Me {
    node: String,
}

#[tonic::async_trait]
impl Whoami for Me {
    async fn who(&self, _: Request<WhoRequest>) -> Result<Response<WhoReply>, Status> {
        Ok(Response::new(WhoReply {
            node: self.node.clone(),
        }))
    }
}

/// A running `Whoami` server.
#[derive(Debug)]
pub struct GrpcServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl GrpcServer {
    /// Serves `Whoami` for `node` on `bind` (port 0: a free one).
    pub async fn start(node: &str, bind: SocketAddr) -> std::io::Result<GrpcServer> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let service = WhoamiServer::new(Me {
            node: node.to_string(),
        });
        let serve = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            });
        Ok(GrpcServer {
            addr,
            stop: Some(stop),
            task: tokio::spawn(serve),
        })
    }

    /// Stops serving, after the requests in flight.
    pub async fn stop(mut self) -> Result<(), tonic::transport::Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

//! `embed-tonic-balance server CONF HOST:PORT`: a `Whoami` gRPC server on HOST:PORT that joins
//! the cluster of CONF advertising `grpc`; leaves at Ctrl-C.
//! `embed-tonic-balance client CONF`: joins too, and asks "who?" twice a second over a
//! channel balanced over the servers that run.

use std::time::Duration;

use embed_tonic_balance::pb::WhoRequest;
use embed_tonic_balance::{balanced_client, join, GrpcServer};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["server", conf, addr] => server(conf, addr).await,
        ["client", conf] => client(conf).await,
        _ => {
            eprintln!(
                "usage: embed-tonic-balance server CONF HOST:PORT | embed-tonic-balance client CONF"
            );
            std::process::exit(2)
        }
    }
}

async fn server(conf: &str, addr: &str) -> Result<()> {
    let settings = autocluster::Settings::load(conf)?;
    let addr = addr
        .parse()
        .map_err(|e| format!("{addr:?} is not HOST:PORT: {e}"))?;
    let grpc = GrpcServer::start(settings.node.as_str(), addr).await?;
    let cluster = join(&settings, grpc.addr).await?;
    println!("{} serves grpc at {}", cluster.node(), grpc.addr);
    tokio::signal::ctrl_c().await?;
    cluster.leave().await?;
    grpc.stop().await?;
    Ok(())
}

async fn client(conf: &str) -> Result<()> {
    let settings = autocluster::Settings::load(conf)?;
    let cluster = autocluster::Cluster::start(&settings).await?;
    let (mut who, _feed) = balanced_client(&cluster);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => match who.who(WhoRequest {}).await {
                Ok(reply) => println!("answered by {}", reply.into_inner().node),
                Err(status) => println!("no answer: {}", status.message()),
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    cluster.leave().await?;
    Ok(())
}

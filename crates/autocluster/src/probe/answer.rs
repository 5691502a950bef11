//! The listener's side of the handshake, for one connection.

use std::net::SocketAddr;
use std::time::Duration;

use autocluster_plugin::log::Escaped;
use autocluster_plugin::Registration;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::admission::{Stage, Ticket};
use super::proof::{nonce, Role, Transcript};
use super::stats::{ConnectionOutcome, ListenerStats};
use super::wire::{
    read_frame, write_frame, Frame, Nonce, Refusal, WireError, MAX_METADATA_BYTES, VERSION,
};
use super::Identity;
use crate::plugin::NodeName;

/// How long a client gets: for its first message, and for the whole handshake.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    pub first_frame: Duration,
    pub handshake: Duration,
}

/// What one connection came to, and what to log about it (nothing from the network
/// unescaped).
type Verdict = (ConnectionOutcome, String);

/// What the listener serves a proven prober after its WELCOME: this node's registration as
/// it is now (labels, endpoints, version, cluster id), when the node has one.
pub(crate) type Served = Option<watch::Receiver<Registration>>;

/// Serves one connection to its end, then counts and logs its outcome.
pub(crate) async fn answer(
    mut stream: TcpStream,
    peer: SocketAddr,
    me: &Identity,
    served: &Served,
    deadlines: Deadlines,
    stats: &ListenerStats,
    ticket: Ticket,
) {
    let _ = stream.set_nodelay(true);
    let limit = deadlines.handshake;
    let (outcome, detail) = tokio::time::timeout(
        limit,
        handshake(&mut stream, me, served, deadlines, &ticket),
    )
    .await
    .unwrap_or_else(|_| {
        let why = format!("no complete handshake within {limit:?}");
        (ConnectionOutcome::Timeout, why)
    });
    drop(stream);
    drop(ticket);
    stats.record(outcome, &peer, &detail);
}

async fn handshake(
    stream: &mut TcpStream,
    me: &Identity,
    served: &Served,
    deadlines: Deadlines,
    ticket: &Ticket,
) -> Verdict {
    let limit = deadlines.handshake;
    let hello = match read_hello(stream, deadlines, ticket).await {
        Ok(h) => h,
        Err(verdict) => return verdict,
    };
    let prober = hello.prober;
    let listener_nonce = nonce();
    let me_node = me.node.as_str();
    let challenge = Frame::Challenge {
        version: VERSION,
        cluster: me.cluster.clone(),
        node: me_node.to_string(),
        nonce: listener_nonce,
    };
    if let Err(e) = write_frame(stream, &challenge, limit).await {
        return failed(e);
    }
    let mac = match read_frame(stream, limit).await {
        Ok(Frame::Proof { mac }) => mac,
        Ok(_) => return (ConnectionOutcome::Malformed, "expected a PROOF".into()),
        Err(e) => return failed(e),
    };
    if hello.cluster != me.cluster {
        let why = format!(
            "{prober} is in cluster {}, this node in {}",
            Escaped::new(&hello.cluster),
            me.cluster
        );
        return refuse(stream, Refusal::WrongCluster, why, limit, ticket).await;
    }
    if hello.target != me_node {
        let target = Escaped::new(&hello.target);
        let why = format!("{prober} asked for {target}, this is {me_node}");
        return refuse(stream, Refusal::WrongNode, why, limit, ticket).await;
    }
    let transcript = Transcript {
        cluster: &me.cluster,
        prober: prober.as_str(),
        listener: me_node,
        prober_nonce: &hello.nonce,
        listener_nonce: &listener_nonce,
    };
    if !transcript.verify(&me.cookie, Role::Prober, &mac) {
        let why = format!("{prober} does not know this cluster's cookie");
        return refuse(stream, Refusal::BadCookie, why, limit, ticket).await;
    }
    ticket.advance(Stage::Settled);
    let welcome = Frame::Welcome {
        mac: transcript.prove(&me.cookie, Role::Listener),
    };
    if let Err(e) = write_frame(stream, &welcome, limit).await {
        return failed(e);
    }
    // The prober is proven: it may learn what this node registers. A prober of the first
    // release has closed the connection by now; what it missed does not change the verdict.
    if let Some(json) = served_json(served) {
        let mac = transcript.prove_metadata(&me.cookie, &json);
        let _ = write_frame(stream, &Frame::Metadata { mac, json }, limit).await;
    }
    (ConnectionOutcome::Proven, format!("answered {prober}"))
}

/// This node's metadata as the METADATA frame carries it; `None` when it serves none (or,
/// which the checks at every update prevent, when it is too large to send).
fn served_json(served: &Served) -> Option<Vec<u8>> {
    let json = serde_json::to_vec(&served.as_ref()?.borrow().meta).ok()?;
    (json.len() <= MAX_METADATA_BYTES).then_some(json)
}

/// A prober's HELLO, its node name checked.
struct Hello {
    cluster: String,
    prober: NodeName,
    target: String,
    nonce: Nonce,
}

/// Reads the first message, within the first-frame deadline, and checks that it is a HELLO
/// of our version from a valid node name; else the connection's verdict.
async fn read_hello(
    stream: &mut TcpStream,
    deadlines: Deadlines,
    ticket: &Ticket,
) -> Result<Hello, Verdict> {
    let limit = deadlines.handshake;
    let first = deadlines.first_frame.min(limit);
    let hello = match read_frame(stream, first).await {
        Ok(f) => f,
        Err(WireError::Timeout(_)) => {
            let why = format!("no HELLO within {first:?} of connecting");
            return Err((ConnectionOutcome::Timeout, why));
        }
        Err(e) => return Err(failed(e)),
    };
    ticket.advance(Stage::Greeted);
    let Frame::Hello {
        version,
        cluster,
        node,
        target,
        nonce,
    } = hello
    else {
        let why = "the first message is not a HELLO".to_string();
        return Err((ConnectionOutcome::Malformed, why));
    };
    if version != VERSION {
        let why = format!("the prober speaks probe version {version}, this node {VERSION}");
        return Err(refuse(stream, Refusal::Version, why, limit, ticket).await);
    }
    match NodeName::parse(&node) {
        Ok(prober) => Ok(Hello {
            cluster,
            prober,
            target,
            nonce,
        }),
        Err(_) => {
            let why = format!(
                "the prober's node name {} is not name@host",
                Escaped::new(&node)
            );
            Err(refuse(stream, Refusal::Protocol, why, limit, ticket).await)
        }
    }
}

/// The verdict of a connection that broke off.
fn failed(e: WireError) -> Verdict {
    let outcome = match e {
        WireError::Malformed(_) => ConnectionOutcome::Malformed,
        WireError::Timeout(_) => ConnectionOutcome::Timeout,
        WireError::Closed | WireError::Io(_) => ConnectionOutcome::Closed,
    };
    (outcome, format!("handshake failed: {e}"))
}

/// Tells the prober why it is refused; the verdict stands whether or not it reads that.
async fn refuse(
    stream: &mut TcpStream,
    reason: Refusal,
    why: String,
    limit: Duration,
    ticket: &Ticket,
) -> Verdict {
    ticket.advance(Stage::Settled);
    let frame = Frame::Refused {
        reason,
        detail: why.clone(),
    };
    let _ = write_frame(stream, &frame, limit).await;
    let outcome = match reason {
        Refusal::BadCookie => ConnectionOutcome::BadCookie,
        Refusal::WrongCluster => ConnectionOutcome::WrongCluster,
        Refusal::WrongNode => ConnectionOutcome::WrongNode,
        Refusal::Version => ConnectionOutcome::Version,
        Refusal::Protocol => ConnectionOutcome::Malformed,
    };
    (outcome, why)
}

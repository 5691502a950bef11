//! The prober's side of the handshake.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::proof::{nonce, Role, Transcript};
use super::wire::{read_frame, write_frame, Frame, Refusal, WireError, VERSION};
use super::{Identity, ProbeOutcome};
use crate::plugin::log::Escaped;
use crate::plugin::NodeName;

/// Probes `target` at `addr`: connects, runs the handshake, and says what answered.
///
/// Everything, the connection included, happens within `timeout`; a node that accepts the
/// connection but does not finish the handshake in time (a paused process) is
/// [`ProbeOutcome::Unreachable`]. Never panics, whatever the peer sends.
pub async fn probe(
    me: &Identity,
    target: &NodeName,
    addr: SocketAddr,
    timeout: Duration,
) -> ProbeOutcome {
    let mut connected = false;
    let attempt = run(me, target, addr, timeout, &mut connected);
    match tokio::time::timeout(timeout, attempt).await {
        Ok(outcome) => outcome,
        Err(_) if connected => silent(addr, timeout),
        Err(_) => ProbeOutcome::Unreachable(format!("connecting to {addr} timed out")),
    }
}

async fn run(
    me: &Identity,
    target: &NodeName,
    addr: SocketAddr,
    limit: Duration,
    connected: &mut bool,
) -> ProbeOutcome {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return ProbeOutcome::Unreachable(format!("cannot connect to {addr}: {e}")),
    };
    *connected = true;
    let _ = stream.set_nodelay(true);
    let wire = |e: WireError| match e {
        WireError::Malformed(why) => ProbeOutcome::Protocol(format!("{addr}: {why}")),
        WireError::Timeout(_) => silent(addr, limit),
        other => ProbeOutcome::Unreachable(format!("{addr}: {other}")),
    };

    let prober_nonce = nonce();
    let hello = Frame::Hello {
        version: VERSION,
        cluster: me.cluster.clone(),
        node: me.node.to_string(),
        target: target.to_string(),
        nonce: prober_nonce,
    };
    if let Err(e) = write_frame(&mut stream, &hello, limit).await {
        return wire(e);
    }
    let (cluster, node, listener_nonce) = match read_frame(&mut stream, limit).await {
        Ok(Frame::Challenge {
            cluster,
            node,
            nonce,
            ..
        }) => (cluster, node, nonce),
        Ok(Frame::Refused { reason, detail }) => return refused(reason, detail),
        Ok(other) => return unexpected(addr, &other),
        Err(e) => return wire(e),
    };
    if node != target.as_str() {
        return ProbeOutcome::WrongNode { answered: node };
    }
    if cluster != me.cluster {
        return ProbeOutcome::WrongCluster { answered: cluster };
    }
    let prober = me.node.to_string();
    let transcript = Transcript {
        cluster: &me.cluster,
        prober: &prober,
        listener: target.as_str(),
        prober_nonce: &prober_nonce,
        listener_nonce: &listener_nonce,
    };
    let proof = Frame::Proof {
        mac: transcript.prove(&me.cookie, Role::Prober),
    };
    if let Err(e) = write_frame(&mut stream, &proof, limit).await {
        return wire(e);
    }
    match read_frame(&mut stream, limit).await {
        Ok(Frame::Welcome { mac }) if transcript.verify(&me.cookie, Role::Listener, &mac) => {
            ProbeOutcome::Running
        }
        // It accepted our proof but cannot prove itself: it does not know the cookie.
        Ok(Frame::Welcome { .. }) => ProbeOutcome::BadCookie,
        Ok(Frame::Refused { reason, detail }) => refused(reason, detail),
        Ok(other) => unexpected(addr, &other),
        Err(e) => wire(e),
    }
}

fn silent(addr: SocketAddr, limit: Duration) -> ProbeOutcome {
    ProbeOutcome::Unreachable(format!(
        "{addr} accepted the connection but did not answer the handshake within {limit:?}"
    ))
}

fn refused(reason: Refusal, detail: String) -> ProbeOutcome {
    match reason {
        Refusal::BadCookie => ProbeOutcome::BadCookie,
        // The listener saw something its CHALLENGE did not show; report its words.
        Refusal::WrongCluster | Refusal::WrongNode | Refusal::Version | Refusal::Protocol => {
            ProbeOutcome::Protocol(format!("refused: {}", Escaped::new(&detail)))
        }
    }
}

fn unexpected(addr: SocketAddr, frame: &Frame) -> ProbeOutcome {
    let name = match frame {
        Frame::Hello { .. } => "HELLO",
        Frame::Challenge { .. } => "CHALLENGE",
        Frame::Proof { .. } => "PROOF",
        Frame::Welcome { .. } => "WELCOME",
        Frame::Refused { .. } => "REFUSED",
    };
    ProbeOutcome::Protocol(format!("{addr} sent an unexpected {name}"))
}

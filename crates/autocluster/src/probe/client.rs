//! The prober's side of the handshake.

use std::net::SocketAddr;
use std::time::Duration;

use autocluster_plugin::Metadata;
use tokio::net::TcpStream;

use super::proof::{nonce, Role, Transcript};
use super::wire::{read_frame, read_metadata, write_frame, Frame, Refusal, WireError, VERSION};
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
    probe_with_metadata(me, target, addr, timeout).await.0
}

/// [`probe`], and the metadata a running target serves after the handshake (its version,
/// labels, endpoints, start time and cluster id): `None` from a node of the first release,
/// which serves none, and when what came is not authentic (its MAC over this handshake does
/// not verify), is not valid metadata, or names another node. Bounded by the same `timeout`.
pub async fn probe_with_metadata(
    me: &Identity,
    target: &NodeName,
    addr: SocketAddr,
    timeout: Duration,
) -> (ProbeOutcome, Option<Metadata>) {
    let mut connected = false;
    let attempt = run(me, target, addr, timeout, &mut connected);
    match tokio::time::timeout(timeout, attempt).await {
        Ok(answer) => answer,
        Err(_) if connected => (silent(addr, timeout), None),
        Err(_) => (
            ProbeOutcome::Unreachable(format!("connecting to {addr} timed out")),
            None,
        ),
    }
}

async fn run(
    me: &Identity,
    target: &NodeName,
    addr: SocketAddr,
    limit: Duration,
    connected: &mut bool,
) -> (ProbeOutcome, Option<Metadata>) {
    let outcome = handshake(me, target, addr, limit, connected).await;
    match outcome {
        Ok((mut stream, transcript)) => {
            let meta = metadata(&mut stream, me, target, addr, limit, &transcript.as_ref()).await;
            (ProbeOutcome::Running, meta)
        }
        Err(outcome) => (outcome, None),
    }
}

/// A verified handshake's transcript, owned (the stream stays open for the METADATA).
struct Proven {
    cluster: String,
    prober: String,
    listener: String,
    prober_nonce: super::wire::Nonce,
    listener_nonce: super::wire::Nonce,
}

impl Proven {
    fn as_ref(&self) -> Transcript<'_> {
        Transcript {
            cluster: &self.cluster,
            prober: &self.prober,
            listener: &self.listener,
            prober_nonce: &self.prober_nonce,
            listener_nonce: &self.listener_nonce,
        }
    }
}

/// Reads the METADATA that follows a verified WELCOME, and keeps it only when it is
/// authentic, valid and about `target`.
async fn metadata(
    stream: &mut TcpStream,
    me: &Identity,
    target: &NodeName,
    addr: SocketAddr,
    limit: Duration,
    transcript: &Transcript<'_>,
) -> Option<Metadata> {
    let why = match read_metadata(stream, limit).await {
        Ok(Frame::Metadata { mac, json })
            if transcript.verify_metadata(&me.cookie, &json, &mac) =>
        {
            match serde_json::from_slice::<Metadata>(&json) {
                Ok(meta) if meta.node.as_ref().is_some_and(|n| n != target) => {
                    "it names another node".to_string()
                }
                Ok(meta) => match crate::metadata::check(&meta) {
                    Ok(()) => return Some(meta),
                    Err(e) => format!("it is not valid: {e}"),
                },
                Err(e) => format!("it is not metadata as JSON: {e}"),
            }
        }
        Ok(Frame::Metadata { .. }) => "its MAC does not verify".to_string(),
        // A node of the first release closes the connection after its WELCOME.
        Err(WireError::Closed) => return None,
        Ok(_) => "another message came instead".to_string(),
        Err(e) => e.to_string(),
    };
    tracing::debug!(node = %target, %addr, "running, but its metadata is ignored: {}", Escaped::new(&why));
    None
}

/// Runs the handshake up to a verified WELCOME: the open stream and the transcript, or what
/// answered instead.
async fn handshake(
    me: &Identity,
    target: &NodeName,
    addr: SocketAddr,
    limit: Duration,
    connected: &mut bool,
) -> Result<(TcpStream, Proven), ProbeOutcome> {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            return Err(ProbeOutcome::Unreachable(format!(
                "cannot connect to {addr}: {e}"
            )))
        }
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
        return Err(wire(e));
    }
    let (cluster, node, listener_nonce) = match read_frame(&mut stream, limit).await {
        Ok(Frame::Challenge {
            cluster,
            node,
            nonce,
            ..
        }) => (cluster, node, nonce),
        Ok(Frame::Refused { reason, detail }) => return Err(refused(reason, detail)),
        Ok(other) => return Err(unexpected(addr, &other)),
        Err(e) => return Err(wire(e)),
    };
    if node != target.as_str() {
        return Err(ProbeOutcome::WrongNode { answered: node });
    }
    if cluster != me.cluster {
        return Err(ProbeOutcome::WrongCluster { answered: cluster });
    }
    let proven = Proven {
        cluster: me.cluster.clone(),
        prober: me.node.to_string(),
        listener: target.to_string(),
        prober_nonce,
        listener_nonce,
    };
    let transcript = proven.as_ref();
    let proof = Frame::Proof {
        mac: transcript.prove(&me.cookie, Role::Prober),
    };
    if let Err(e) = write_frame(&mut stream, &proof, limit).await {
        return Err(wire(e));
    }
    let verdict = match read_frame(&mut stream, limit).await {
        Ok(Frame::Welcome { mac }) if transcript.verify(&me.cookie, Role::Listener, &mac) => {
            return Ok((stream, proven))
        }
        // It accepted our proof but cannot prove itself: it does not know the cookie.
        Ok(Frame::Welcome { .. }) => ProbeOutcome::BadCookie,
        Ok(Frame::Refused { reason, detail }) => refused(reason, detail),
        Ok(other) => unexpected(addr, &other),
        Err(e) => wire(e),
    };
    Err(verdict)
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
        Frame::Metadata { .. } => "METADATA",
    };
    ProbeOutcome::Protocol(format!("{addr} sent an unexpected {name}"))
}

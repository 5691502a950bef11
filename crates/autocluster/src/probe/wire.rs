//! The handshake's frames: encoding, and bounded, panic-free decoding.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version this build speaks.
pub const VERSION: u8 = 1;

/// The largest frame payload either side reads, in bytes, except the listener's METADATA.
pub const MAX_FRAME: usize = 1024;

/// The largest metadata (as JSON) a listener serves in its METADATA frame, in bytes: what
/// static and DNS peers learn of a node's version, labels, endpoints and cluster id.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The largest METADATA payload a prober reads (the MAC and the JSON).
const MAX_METADATA_FRAME: usize = MAC_LEN + MAX_METADATA_BYTES;

/// The first bytes of a HELLO payload: an autocluster probe.
pub(crate) const MAGIC: &[u8; 4] = b"ACPB";

/// Nonce length, in bytes.
pub(crate) const NONCE_LEN: usize = 32;

/// MAC length (HMAC-SHA256), in bytes.
pub(crate) const MAC_LEN: usize = 32;

pub(crate) type Nonce = [u8; NONCE_LEN];
pub(crate) type Tag = [u8; MAC_LEN];

const T_HELLO: u8 = 1;
const T_CHALLENGE: u8 = 2;
const T_PROOF: u8 = 3;
const T_WELCOME: u8 = 4;
const T_REFUSED: u8 = 5;
const T_METADATA: u8 = 6;

/// Why a listener refused a prober.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The prober's proof did not verify with our cookie.
    BadCookie,
    /// The prober is in another cluster.
    WrongCluster,
    /// The prober asked for another node.
    WrongNode,
    /// The prober speaks a version we do not.
    Version,
    /// Anything else the prober got wrong.
    Protocol,
}

impl Refusal {
    fn code(self) -> u8 {
        match self {
            Refusal::BadCookie => 1,
            Refusal::WrongCluster => 2,
            Refusal::WrongNode => 3,
            Refusal::Version => 4,
            Refusal::Protocol => 5,
        }
    }

    fn from_code(c: u8) -> Refusal {
        match c {
            1 => Refusal::BadCookie,
            2 => Refusal::WrongCluster,
            3 => Refusal::WrongNode,
            4 => Refusal::Version,
            _ => Refusal::Protocol,
        }
    }
}

/// One message of the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// Prober to listener: who I am, whom I want, my nonce.
    Hello {
        version: u8,
        cluster: String,
        node: String,
        target: String,
        nonce: Nonce,
    },
    /// Listener to prober: who I am, my nonce.
    Challenge {
        version: u8,
        cluster: String,
        node: String,
        nonce: Nonce,
    },
    /// Prober to listener: the prober's MAC.
    Proof { mac: Tag },
    /// Listener to prober: accepted, and the listener's MAC.
    Welcome { mac: Tag },
    /// Listener to prober: refused.
    Refused { reason: Refusal, detail: String },
    /// Listener to prober, right after WELCOME: the listener's metadata as JSON, and a MAC
    /// over it and the handshake's transcript. A prober of the first release reads no
    /// further than WELCOME and never sees it.
    Metadata { mac: Tag, json: Vec<u8> },
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The peer closed the connection before a whole frame arrived.
    Closed,
    /// The socket failed.
    Io(std::io::Error),
    /// No whole frame within the read's bound.
    Timeout(Duration),
    /// The bytes are not a frame of this protocol.
    Malformed(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Closed => f.write_str("connection closed mid-handshake"),
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Timeout(d) => write!(f, "no complete message within {d:?}"),
            WireError::Malformed(why) => f.write_str(why),
        }
    }
}

fn malformed(why: impl Into<String>) -> WireError {
    WireError::Malformed(why.into())
}

impl Frame {
    /// The frame as bytes on the wire. Strings over 300 bytes are cut (at a character
    /// boundary), which only absurd names could cause.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(128);
        let ty = match self {
            Frame::Hello {
                version,
                cluster,
                node,
                target,
                nonce,
            } => {
                p.extend_from_slice(MAGIC);
                p.push(*version);
                put_str(&mut p, cluster);
                put_str(&mut p, node);
                put_str(&mut p, target);
                p.extend_from_slice(nonce);
                T_HELLO
            }
            Frame::Challenge {
                version,
                cluster,
                node,
                nonce,
            } => {
                p.push(*version);
                put_str(&mut p, cluster);
                put_str(&mut p, node);
                p.extend_from_slice(nonce);
                T_CHALLENGE
            }
            Frame::Proof { mac } => {
                p.extend_from_slice(mac);
                T_PROOF
            }
            Frame::Welcome { mac } => {
                p.extend_from_slice(mac);
                T_WELCOME
            }
            Frame::Refused { reason, detail } => {
                p.push(reason.code());
                put_str(&mut p, detail);
                T_REFUSED
            }
            Frame::Metadata { mac, json } => {
                p.extend_from_slice(mac);
                p.extend_from_slice(&json[..json.len().min(MAX_METADATA_BYTES)]);
                T_METADATA
            }
        };
        let mut out = Vec::with_capacity(3 + p.len());
        out.push(ty);
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(&p);
        out
    }

    /// Decodes a payload of frame type `ty`. Never panics; any inconsistency is `Malformed`.
    pub(crate) fn decode(ty: u8, payload: &[u8]) -> Result<Frame, WireError> {
        let mut r = Reader(payload);
        let frame = match ty {
            T_HELLO => {
                if r.take(MAGIC.len())? != MAGIC {
                    return Err(malformed("not an autocluster probe (bad magic)"));
                }
                let version = r.u8()?;
                if version != VERSION {
                    // A later version may lay out the rest differently: stop here.
                    return Ok(Frame::Hello {
                        version,
                        cluster: String::new(),
                        node: String::new(),
                        target: String::new(),
                        nonce: [0; NONCE_LEN],
                    });
                }
                Frame::Hello {
                    version,
                    cluster: r.string()?,
                    node: r.string()?,
                    target: r.string()?,
                    nonce: r.array()?,
                }
            }
            T_CHALLENGE => {
                let version = r.u8()?;
                if version != VERSION {
                    return Err(malformed(format!(
                        "the peer speaks probe version {version}, this node speaks {VERSION}"
                    )));
                }
                Frame::Challenge {
                    version,
                    cluster: r.string()?,
                    node: r.string()?,
                    nonce: r.array()?,
                }
            }
            T_PROOF => Frame::Proof { mac: r.array()? },
            T_WELCOME => Frame::Welcome { mac: r.array()? },
            T_REFUSED => Frame::Refused {
                reason: Refusal::from_code(r.u8()?),
                detail: r.string()?,
            },
            T_METADATA => {
                let mac = r.array()?;
                let json = r.take(r.0.len())?.to_vec();
                Frame::Metadata { mac, json }
            }
            other => return Err(malformed(format!("unknown message type {other}"))),
        };
        if !r.0.is_empty() {
            return Err(malformed(format!(
                "{} unexpected trailing bytes",
                r.0.len()
            )));
        }
        Ok(frame)
    }
}

/// The longest string a frame carries, in bytes; three of them and a nonce fit a frame.
const MAX_STR: usize = 300;

fn put_str(p: &mut Vec<u8>, s: &str) {
    let mut n = s.len().min(MAX_STR);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    let bytes = &s.as_bytes()[..n];
    p.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    p.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(malformed("message shorter than its fields"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn string(&mut self) -> Result<String, WireError> {
        let len = self.take(2)?;
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed("a name is not UTF-8"))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

/// Reads one frame: at most `3 + MAX_FRAME` bytes, within `limit`. A METADATA frame is
/// not read here (it is as unknown as any other type): only [`read_metadata`] reads one.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: Duration,
) -> Result<Frame, WireError> {
    read_bounded(r, limit, T_REFUSED, MAX_FRAME).await
}

/// Reads the frame that follows a verified WELCOME: a METADATA of at most
/// `3 + MAC_LEN + MAX_METADATA_BYTES` bytes (or another frame, which the caller refuses).
pub(crate) async fn read_metadata<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: Duration,
) -> Result<Frame, WireError> {
    read_bounded(r, limit, T_METADATA, MAX_METADATA_FRAME).await
}

async fn read_bounded<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: Duration,
    last_type: u8,
    max: usize,
) -> Result<Frame, WireError> {
    let read = async {
        let mut head = [0u8; 3];
        r.read_exact(&mut head).await.map_err(eof_or_io)?;
        let len = u16::from_be_bytes([head[1], head[2]]) as usize;
        if !(T_HELLO..=last_type).contains(&head[0]) {
            return Err(malformed(format!("unknown message type {}", head[0])));
        }
        let max = if head[0] == T_METADATA {
            max
        } else {
            MAX_FRAME
        };
        if len > max {
            return Err(malformed(format!(
                "message of {len} bytes exceeds the limit of {max}"
            )));
        }
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).await.map_err(eof_or_io)?;
        Frame::decode(head[0], &payload)
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or(Err(WireError::Timeout(limit)))
}

/// Writes one frame within `limit`.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    frame: &Frame,
    limit: Duration,
) -> Result<(), WireError> {
    let bytes = frame.encode();
    let write = async {
        w.write_all(&bytes).await.map_err(eof_or_io)?;
        w.flush().await.map_err(eof_or_io)
    };
    tokio::time::timeout(limit, write)
        .await
        .unwrap_or(Err(WireError::Timeout(limit)))
}

fn eof_or_io(e: std::io::Error) -> WireError {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe => WireError::Closed,
        _ => WireError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(f: Frame) {
        let bytes = f.encode();
        let len = u16::from_be_bytes([bytes[1], bytes[2]]) as usize;
        assert_eq!(len, bytes.len() - 3);
        assert_eq!(Frame::decode(bytes[0], &bytes[3..]).unwrap(), f);
    }

    #[test]
    fn frames_roundtrip() {
        roundtrip(Frame::Hello {
            version: VERSION,
            cluster: "emqxcl".into(),
            node: "a@h".into(),
            target: "b@::1".into(),
            nonce: [7; NONCE_LEN],
        });
        roundtrip(Frame::Challenge {
            version: VERSION,
            cluster: "emqxcl".into(),
            node: "b@::1".into(),
            nonce: [9; NONCE_LEN],
        });
        roundtrip(Frame::Proof { mac: [1; MAC_LEN] });
        roundtrip(Frame::Welcome { mac: [2; MAC_LEN] });
        roundtrip(Frame::Refused {
            reason: Refusal::BadCookie,
            detail: "no".into(),
        });
        roundtrip(Frame::Metadata {
            mac: [3; MAC_LEN],
            json: br#"{"labels":{"zone":"eu-1"}}"#.to_vec(),
        });
    }

    #[tokio::test]
    async fn metadata_is_read_only_where_expected_and_within_its_bound() {
        let frame = Frame::Metadata {
            mac: [4; MAC_LEN],
            json: vec![b'x'; 4000],
        }
        .encode();
        // Before the handshake is done, a METADATA is an unknown type: nothing is read.
        let mut early: &[u8] = &frame;
        assert!(matches!(
            read_frame(&mut early, Duration::from_secs(1)).await,
            Err(WireError::Malformed(ref m)) if m.contains("unknown message type 6")
        ));
        let mut after_welcome: &[u8] = &frame;
        assert!(matches!(
            read_metadata(&mut after_welcome, Duration::from_secs(1)).await,
            Ok(Frame::Metadata { ref json, .. }) if json.len() == 4000
        ));
        // Every other type keeps its 1 KiB bound there too.
        let mut big_welcome: &[u8] = &[T_WELCOME, 0x10, 0x00];
        assert!(matches!(
            read_metadata(&mut big_welcome, Duration::from_secs(1)).await,
            Err(WireError::Malformed(ref m)) if m.contains("exceeds the limit of 1024")
        ));
        let over = (MAX_METADATA_FRAME + 1) as u16;
        let head = [T_METADATA, (over >> 8) as u8, over as u8];
        let mut huge: &[u8] = &head;
        assert!(matches!(
            read_metadata(&mut huge, Duration::from_secs(1)).await,
            Err(WireError::Malformed(ref m)) if m.contains("exceeds")
        ));
    }

    #[test]
    fn every_prefix_and_mutation_of_a_frame_decodes_without_panicking() {
        let hello = Frame::Hello {
            version: VERSION,
            cluster: "emqxcl".into(),
            node: "a@h".into(),
            target: "b@h".into(),
            nonce: [3; NONCE_LEN],
        }
        .encode();
        for cut in 0..hello.len() - 3 {
            assert!(Frame::decode(hello[0], &hello[3..3 + cut]).is_err());
        }
        for i in 3..hello.len() {
            for b in [0u8, 0x7f, 0xff] {
                let mut m = hello.clone();
                m[i] = b;
                let _ = Frame::decode(m[0], &m[3..]);
            }
        }
        for ty in 0..=255u8 {
            let _ = Frame::decode(ty, &hello[3..]);
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1200)) {
            if let Some((ty, payload)) = bytes.split_first() {
                let _ = Frame::decode(*ty, payload);
            }
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let mut input: &[u8] = &bytes;
            let _ = rt.block_on(read_frame(&mut input, Duration::from_secs(1)));
        }
    }

    #[tokio::test]
    async fn oversized_and_unknown_frames_are_refused_before_reading_the_payload() {
        let mut big: &[u8] = &[T_HELLO, 0xff, 0xff];
        let e = read_frame(&mut big, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(e, WireError::Malformed(ref m) if m.contains("exceeds")),
            "{e}"
        );
        let mut unknown: &[u8] = &[0x47, 0x45, 0x54];
        assert!(matches!(
            read_frame(&mut unknown, Duration::from_secs(1)).await,
            Err(WireError::Malformed(_))
        ));
        let mut short: &[u8] = &[T_PROOF, 0, 32, 1, 2];
        assert!(matches!(
            read_frame(&mut short, Duration::from_secs(1)).await,
            Err(WireError::Closed)
        ));
    }
}

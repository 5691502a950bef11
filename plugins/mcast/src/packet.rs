//! The wire format: one datagram per packet, authenticated with HMAC-SHA256.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "ACMC"
//!      4     1  version (1)
//!      5     1  kind: 1 announce, 2 heartbeat, 3 leave, 4 reply
//!      6     8  incarnation (u64, big-endian)
//!     14     8  sequence number (u64)
//!     22     8  timestamp, ms since the Unix epoch (u64)
//!     30     4  member TTL in ms (u32, not 0)
//!     34     1  cluster name length C (1..=255)
//!     35     C  cluster name (UTF-8)
//!   35+C     1  node name length N (1..=255)
//!   36+C     N  node name (UTF-8, name@host)
//! 36+C+N     2  metadata length M (u16, 0..=4096)
//! 38+C+N     M  metadata as JSON (M = 0: none)
//! 38+C+N+M  32  HMAC-SHA256 over every byte before it, keyed by [`Key`]
//! ```

use std::fmt;
use std::time::Duration;

use autocluster_plugin::{Metadata, NodeName};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The first four bytes of every packet.
pub const MAGIC: [u8; 4] = *b"ACMC";
/// The format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// The largest datagram accepted; anything longer is dropped unread.
pub const MAX_DATAGRAM: usize = 8192;
/// The largest metadata JSON a packet carries.
pub const MAX_META: usize = 4096;
/// The length of the HMAC-SHA256 tag that ends every packet.
pub const TAG_LEN: usize = 32;
/// Bytes before the cluster name: magic, version, kind, incarnation, seq, timestamp, TTL.
const FIXED: usize = 34;
/// The shortest possible packet (empty names are refused later, but this bounds slicing).
pub const MIN_LEN: usize = FIXED + 1 + 1 + 2 + TAG_LEN;
/// The label the packet key is derived with.
const KEY_LABEL: &[u8] = b"autocluster mcast v1";

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// The packet key: HMAC-SHA256(`node.cookie`, "autocluster mcast v1").
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl Key {
    /// Derives the key from the cluster's cookie.
    pub fn derive(cookie: &str) -> Self {
        let mut m = mac(cookie.as_bytes());
        m.update(KEY_LABEL);
        Key(m.finalize().into_bytes().into())
    }

    fn tag(&self, body: &[u8]) -> [u8; TAG_LEN] {
        let mut m = mac(&self.0);
        m.update(body);
        m.finalize().into_bytes().into()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(******)")
    }
}

/// What a packet says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// "I am here": sent once on register; peers answer with a [`Kind::Reply`].
    Announce = 1,
    /// "I am still here": sent every heartbeat.
    Heartbeat = 2,
    /// "I am leaving": sent (twice) on deregister.
    Leave = 3,
    /// An answer to an announce; never answered itself.
    Reply = 4,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Announce),
            2 => Some(Kind::Heartbeat),
            3 => Some(Kind::Leave),
            4 => Some(Kind::Reply),
            _ => None,
        }
    }
}

/// One decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// What the packet says.
    pub kind: Kind,
    /// `cluster.name` of the sender.
    pub cluster: String,
    /// The sender.
    pub node: NodeName,
    /// The sender's incarnation (its start time in ms, shifted, plus randomness).
    pub incarnation: u64,
    /// Increases with every packet the incarnation sends.
    pub seq: u64,
    /// The sender's clock when it sent the packet, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// How long the sender stays a member without being heard from again.
    pub member_ttl: Duration,
    /// What the sender says about itself.
    pub meta: Option<Metadata>,
}

/// Why a packet could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A name is empty or longer than 255 bytes.
    #[error("the {0} must be 1 to 255 bytes long")]
    BadLength(&'static str),
    /// The metadata is longer than [`MAX_META`] as JSON.
    #[error("the metadata is {0} bytes as JSON; a packet carries at most {MAX_META}")]
    MetaTooLarge(usize),
    /// The member TTL is zero or does not fit in 32 bits of milliseconds.
    #[error("the member TTL must be from 1ms to 49 days")]
    BadTtl,
}

/// Why a datagram was not accepted as a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than [`MAX_DATAGRAM`].
    #[error("datagram of {0} bytes is too large")]
    TooLarge(usize),
    /// Shorter than the smallest packet.
    #[error("datagram of {0} bytes is too short")]
    TooShort(usize),
    /// Does not start with the magic: not one of ours.
    #[error("not an autocluster packet (bad magic)")]
    BadMagic,
    /// A version this crate does not read.
    #[error("unsupported packet version {0}")]
    Version(u8),
    /// The HMAC tag does not match: another cookie, or tampered with.
    #[error("bad HMAC tag (another cookie, or altered)")]
    BadMac,
    /// Authentic but not well formed.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

/// Writes `p` as a datagram authenticated with `key`.
pub fn encode(p: &Packet, key: &Key) -> Result<Vec<u8>, EncodeError> {
    let cluster = p.cluster.as_bytes();
    let node = p.node.as_str().as_bytes();
    let cluster_len = short_len(cluster, "cluster name")?;
    let node_len = short_len(node, "node name")?;
    let meta = match &p.meta {
        Some(m) => serde_json::to_vec(m).map_err(|_| EncodeError::MetaTooLarge(0))?,
        None => Vec::new(),
    };
    if meta.len() > MAX_META {
        return Err(EncodeError::MetaTooLarge(meta.len()));
    }
    let ttl = u32::try_from(p.member_ttl.as_millis())
        .ok()
        .filter(|t| *t > 0)
        .ok_or(EncodeError::BadTtl)?;
    let mut out = Vec::with_capacity(MIN_LEN + cluster.len() + node.len() + meta.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(p.kind as u8);
    out.extend_from_slice(&p.incarnation.to_be_bytes());
    out.extend_from_slice(&p.seq.to_be_bytes());
    out.extend_from_slice(&p.timestamp_ms.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.push(cluster_len);
    out.extend_from_slice(cluster);
    out.push(node_len);
    out.extend_from_slice(node);
    out.extend_from_slice(&(meta.len() as u16).to_be_bytes());
    out.extend_from_slice(&meta);
    Ok(seal(out, key))
}

fn short_len(b: &[u8], what: &'static str) -> Result<u8, EncodeError> {
    u8::try_from(b.len())
        .ok()
        .filter(|n| *n > 0)
        .ok_or(EncodeError::BadLength(what))
}

/// Appends the HMAC tag of `body` under `key`: what [`encode`] does last. Public so tests and
/// the fuzz target can build authentic packets with arbitrary bodies.
pub fn seal(mut body: Vec<u8>, key: &Key) -> Vec<u8> {
    let tag = key.tag(&body);
    body.extend_from_slice(&tag);
    body
}

/// Reads a datagram: checks its size, magic, version and HMAC tag, then every length field
/// before slicing. A pure function that never panics.
pub fn decode(buf: &[u8], key: &Key) -> Result<Packet, DecodeError> {
    if buf.len() > MAX_DATAGRAM {
        return Err(DecodeError::TooLarge(buf.len()));
    }
    if buf.len() < MIN_LEN {
        return Err(DecodeError::TooShort(buf.len()));
    }
    let (body, tag) = buf.split_at(buf.len() - TAG_LEN);
    if body[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if body[4] != VERSION {
        return Err(DecodeError::Version(body[4]));
    }
    let mut m = mac(&key.0);
    m.update(body);
    m.verify_slice(tag).map_err(|_| DecodeError::BadMac)?;

    let kind = Kind::from_byte(body[5]).ok_or(DecodeError::Malformed("unknown packet kind"))?;
    let mut r = Reader(&body[6..]);
    let incarnation = r.u64()?;
    let seq = r.u64()?;
    let timestamp_ms = r.u64()?;
    let ttl_ms = r.u32()?;
    let cluster_len = usize::from(r.u8()?);
    let cluster = r.take(cluster_len)?;
    let node_len = usize::from(r.u8()?);
    let node = r.take(node_len)?;
    let meta_len = usize::from(r.u16()?);
    if meta_len > MAX_META {
        return Err(DecodeError::Malformed("metadata longer than 4096 bytes"));
    }
    let meta = r.take(meta_len)?;
    if !r.0.is_empty() {
        return Err(DecodeError::Malformed("bytes after the metadata"));
    }

    if ttl_ms == 0 {
        return Err(DecodeError::Malformed("member TTL of zero"));
    }
    let cluster = std::str::from_utf8(cluster)
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or(DecodeError::Malformed("cluster name empty or not UTF-8"))?;
    let node = std::str::from_utf8(node)
        .ok()
        .and_then(|n| NodeName::parse(n).ok())
        .ok_or(DecodeError::Malformed("invalid node name"))?;
    let meta = if meta.is_empty() {
        None
    } else {
        let m: Metadata = serde_json::from_slice(meta)
            .map_err(|_| DecodeError::Malformed("metadata is not valid JSON"))?;
        if m.node.as_ref().is_some_and(|n| *n != node) {
            return Err(DecodeError::Malformed("metadata names another node"));
        }
        Some(m)
    };
    Ok(Packet {
        kind,
        cluster: cluster.to_string(),
        node,
        incarnation,
        seq,
        timestamp_ms,
        member_ttl: Duration::from_millis(u64::from(ttl_ms)),
        meta,
    })
}

/// A cursor that checks every length before slicing.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.0.len() {
            return Err(DecodeError::Malformed("a length field runs past the end"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet() -> Packet {
        Packet {
            kind: Kind::Heartbeat,
            cluster: "emqxcl".into(),
            node: NodeName::parse("emqx1@127.0.0.21").unwrap(),
            incarnation: 0x1234_5678_9abc,
            seq: 7,
            timestamp_ms: 1_790_000_000_000,
            member_ttl: Duration::from_secs(5),
            meta: Some(Metadata::default().with_version("1.0")),
        }
    }

    #[test]
    fn layout_matches_the_documented_offsets() {
        let key = Key::derive("secret");
        let p = packet();
        let b = encode(&p, &key).unwrap();
        assert_eq!(&b[..4], b"ACMC");
        assert_eq!(b[4], 1);
        assert_eq!(b[5], 2);
        assert_eq!(&b[6..14], &p.incarnation.to_be_bytes());
        assert_eq!(&b[14..22], &7u64.to_be_bytes());
        assert_eq!(&b[30..34], &5000u32.to_be_bytes());
        assert_eq!(b[34], 6);
        assert_eq!(&b[35..41], b"emqxcl");
        assert_eq!(usize::from(b[41]), "emqx1@127.0.0.21".len());
        assert_eq!(decode(&b, &key).unwrap(), p);
    }

    #[test]
    fn another_cookie_is_a_bad_mac() {
        let b = encode(&packet(), &Key::derive("secret")).unwrap();
        assert_eq!(decode(&b, &Key::derive("other")), Err(DecodeError::BadMac));
    }

    #[test]
    fn authentic_but_malformed_bodies_are_refused() {
        let key = Key::derive("k");
        let good = encode(&packet(), &key).unwrap();
        let body = &good[..good.len() - TAG_LEN];
        // One byte short: the metadata length runs past the end.
        let short = seal(body[..body.len() - 1].to_vec(), &key);
        assert!(matches!(
            decode(&short, &key),
            Err(DecodeError::Malformed(_))
        ));
        // Trailing byte.
        let mut long = body.to_vec();
        long.push(0);
        assert!(matches!(
            decode(&seal(long, &key), &key),
            Err(DecodeError::Malformed(_))
        ));
        // Unknown kind.
        let mut kind = body.to_vec();
        kind[5] = 9;
        assert!(matches!(
            decode(&seal(kind, &key), &key),
            Err(DecodeError::Malformed(_))
        ));
        // Zero TTL.
        let mut ttl = body.to_vec();
        ttl[30..34].copy_from_slice(&[0; 4]);
        assert!(matches!(
            decode(&seal(ttl, &key), &key),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn encode_refuses_what_does_not_fit() {
        let key = Key::derive("k");
        let mut p = packet();
        p.meta
            .as_mut()
            .unwrap()
            .labels
            .insert("x".into(), "y".repeat(5000));
        assert!(matches!(
            encode(&p, &key),
            Err(EncodeError::MetaTooLarge(_))
        ));
        let mut p = packet();
        p.cluster = "c".repeat(256);
        assert!(matches!(encode(&p, &key), Err(EncodeError::BadLength(_))));
        let mut p = packet();
        p.member_ttl = Duration::ZERO;
        assert_eq!(encode(&p, &key), Err(EncodeError::BadTtl));
    }

    #[test]
    fn the_key_is_not_printed() {
        assert_eq!(format!("{:?}", Key::derive("secret")), "Key(******)");
    }
}

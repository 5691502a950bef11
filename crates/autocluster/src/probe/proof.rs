//! The handshake's proofs: nonces, and HMAC-SHA256 over a transcript of both sides.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::wire::{Nonce, Tag, NONCE_LEN};

type HmacSha256 = Hmac<Sha256>;

/// The protocol label every transcript starts with.
const LABEL: &[u8] = b"autocluster-probe/1\0";

/// Which side a proof is for; part of the transcript so one side's proof never passes for the
/// other's (no reflection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The side that connects and asks.
    Prober,
    /// The side that listens and answers.
    Listener,
    /// The listener again, for the metadata it serves after its WELCOME.
    Metadata,
}

impl Role {
    fn tag(self) -> &'static [u8] {
        match self {
            Role::Prober => b"client\0",
            Role::Listener => b"server\0",
            Role::Metadata => b"metadata\0",
        }
    }
}

/// What both sides prove knowledge of the cookie over.
#[derive(Clone, Copy)]
pub(crate) struct Transcript<'a> {
    /// The cluster's name (the listener's, which the prober checked equals its own).
    pub cluster: &'a str,
    /// The prober's node name.
    pub prober: &'a str,
    /// The listener's node name.
    pub listener: &'a str,
    /// The prober's nonce.
    pub prober_nonce: &'a Nonce,
    /// The listener's nonce.
    pub listener_nonce: &'a Nonce,
}

impl Transcript<'_> {
    fn mac(&self, cookie: &str, role: Role) -> HmacSha256 {
        let Ok(mut mac) = HmacSha256::new_from_slice(cookie.as_bytes()) else {
            unreachable!("HMAC accepts keys of any length")
        };
        mac.update(LABEL);
        mac.update(role.tag());
        for field in [self.cluster, self.prober, self.listener] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        mac.update(self.prober_nonce);
        mac.update(self.listener_nonce);
        mac
    }

    /// The proof `role` sends.
    pub(crate) fn prove(&self, cookie: &str, role: Role) -> Tag {
        self.mac(cookie, role).finalize().into_bytes().into()
    }

    /// Whether `tag` is `role`'s proof under `cookie` (compared in constant time).
    pub(crate) fn verify(&self, cookie: &str, role: Role, tag: &Tag) -> bool {
        self.mac(cookie, role).verify_slice(tag).is_ok()
    }

    /// The listener's MAC over the metadata it serves, bound to this handshake (so neither
    /// a change on the way nor a replay from another handshake passes).
    pub(crate) fn prove_metadata(&self, cookie: &str, json: &[u8]) -> Tag {
        let mut mac = self.mac(cookie, Role::Metadata);
        mac.update(&(json.len() as u64).to_be_bytes());
        mac.update(json);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the listener's MAC over `json` in this handshake.
    pub(crate) fn verify_metadata(&self, cookie: &str, json: &[u8], tag: &Tag) -> bool {
        let mut mac = self.mac(cookie, Role::Metadata);
        mac.update(&(json.len() as u64).to_be_bytes());
        mac.update(json);
        mac.verify_slice(tag).is_ok()
    }
}

/// A fresh random nonce from the thread's cryptographically secure generator.
pub(crate) fn nonce() -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut n);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_role_cookie_names_and_nonces() {
        let (a, b) = (nonce(), nonce());
        assert_ne!(a, b);
        let t = Transcript {
            cluster: "emqxcl",
            prober: "a@h",
            listener: "b@h",
            prober_nonce: &a,
            listener_nonce: &b,
        };
        let p = t.prove("cookie", Role::Prober);
        assert!(t.verify("cookie", Role::Prober, &p));
        assert!(!t.verify("cookie", Role::Listener, &p), "reflected");
        assert!(!t.verify("other", Role::Prober, &p), "wrong cookie");
        let fresh = nonce();
        let replayed = Transcript {
            listener_nonce: &fresh,
            ..t
        };
        assert!(!replayed.verify("cookie", Role::Prober, &p), "replayed");
        // Field boundaries are unambiguous: moving a character between names changes the MAC.
        let shifted = Transcript {
            cluster: "emqxcla",
            prober: "@h",
            ..t
        };
        assert!(
            !shifted.verify("cookie", Role::Prober, &p),
            "ambiguous fields"
        );
    }

    #[test]
    fn the_metadata_mac_binds_the_json_the_handshake_and_the_cookie() {
        let (a, b) = (nonce(), nonce());
        let t = Transcript {
            cluster: "emqxcl",
            prober: "a@h",
            listener: "b@h",
            prober_nonce: &a,
            listener_nonce: &b,
        };
        let json = br#"{"labels":{"zone":"eu-1"}}"#;
        let tag = t.prove_metadata("cookie", json);
        assert!(t.verify_metadata("cookie", json, &tag));
        assert!(!t.verify_metadata("cookie", br#"{"labels":{"zone":"eu-2"}}"#, &tag));
        assert!(!t.verify_metadata("other", json, &tag), "wrong cookie");
        assert!(!t.verify("cookie", Role::Listener, &tag), "not a WELCOME");
        let fresh = nonce();
        let other = Transcript {
            prober_nonce: &fresh,
            ..t
        };
        assert!(!other.verify_metadata("cookie", json, &tag), "replayed");
    }
}

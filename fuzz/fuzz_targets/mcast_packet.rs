//! Feeds arbitrary datagrams to the multicast packet decoder: as they come (almost all stop
//! at the HMAC check), and behind a valid tag, so the parser behind it is fuzzed too. Either
//! way `decode` must return, never panic; what it accepts must encode back to itself.
#![no_main]

use autocluster_mcast::{decode, encode, seal, Key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = Key::derive("fuzz");
    let _ = decode(data, &key);
    let mut body = b"ACMC\x01".to_vec();
    body.extend_from_slice(data);
    let sealed = seal(body, &key);
    if let Ok(p) = decode(&sealed, &key) {
        let again = encode(&p, &key).expect("a decoded packet encodes");
        assert_eq!(decode(&again, &key), Ok(p));
    }
});

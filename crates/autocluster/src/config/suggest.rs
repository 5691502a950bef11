//! "Did you mean ...?": the known key nearest to a misspelt one.

use super::schema::known_keys;

/// The known key nearest to `key` by edit distance, when it is close enough to be a likely
/// misspelling: at most `max` edits, and at most a third of the length of the key's last
/// word (so `cluster.etcd.foo` is not taken for `cluster.etcd.api`).
pub fn nearest(key: &str, max: usize) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    let last = lower.rsplit('.').next().unwrap_or_default().len().max(3);
    known_keys()
        .iter()
        .filter(|s| !s.is_pattern())
        .map(|s| (strsim::levenshtein(&lower, s.key), s.key))
        .filter(|&(d, _)| d <= max && d * 3 <= last)
        .min_by_key(|&(d, k)| (d, k.len()))
        .map(|(_, k)| k)
}

/// The known keys directly in the section of `key` (`cluster.etcd` for
/// `cluster.etcd.foo`), relative to it; empty when the section is not ours.
pub fn section_keys(key: &str) -> (String, Vec<&'static str>) {
    let section = key.rsplit_once('.').map(|(s, _)| s).unwrap_or(key);
    let keys = known_keys()
        .iter()
        .filter(|s| !s.no_effect && s.alias_of.is_none())
        .filter_map(|s| s.key.strip_prefix(section)?.strip_prefix('.'))
        .filter(|rest| !rest.contains('.'))
        .collect();
    (section.to_string(), keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_keys_only() {
        assert_eq!(
            nearest("cluster.etcd.prefx", 3),
            Some("cluster.etcd.prefix")
        );
        assert_eq!(nearest("node.nam", 2), Some("node.name"));
        assert_eq!(nearest("Node.Name", 2), Some("node.name"));
        assert_eq!(nearest("cluster.discvery", 3), Some("cluster.discovery"));
        assert_eq!(nearest("node.max_ports", 2), None);
        assert_eq!(nearest("cluster.etcd.foo", 3), None);
        assert_eq!(
            nearest("cluster.etdc.prefix", 3),
            Some("cluster.etcd.prefix")
        );
        assert_eq!(nearest("listener.tcp.external", 3), None);
    }

    #[test]
    fn lists_a_section() {
        let (s, keys) = section_keys("cluster.mcast.bogus");
        assert_eq!(s, "cluster.mcast");
        assert!(keys.contains(&"heartbeat") && !keys.contains(&"sndbuf"));
    }
}

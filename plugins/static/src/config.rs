//! `cluster.static.*`: the seed list.

use std::time::Duration;

use autocluster_plugin::{NodeName, Result, Section};

/// How often the engine asks for the (unchanging) seed list; only the candidates' probes
/// matter, and those run on `cluster.probe_interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// The validated settings of the static backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticConfig {
    /// The seed nodes, in the order written, duplicates removed.
    pub seeds: Vec<NodeName>,
}

impl StaticConfig {
    /// Reads `seeds` (a comma or space separated list of node names, required) from the
    /// section; a name that does not parse is an error located at the key.
    pub fn from_section(section: &Section) -> Result<Self> {
        section.required("seeds")?;
        let mut seeds: Vec<NodeName> = Vec::new();
        for raw in section.list("seeds") {
            let node = NodeName::parse(&raw).map_err(|e| section.error("seeds", e.message()))?;
            if !seeds.contains(&node) {
                seeds.push(node);
            }
        }
        if seeds.is_empty() {
            return Err(section.error(
                "seeds",
                "expected at least one node name, e.g. emqx1@192.168.1.10",
            ));
        }
        Ok(StaticConfig { seeds })
    }
}

#[cfg(test)]
mod tests {
    use autocluster_plugin::{ErrorKind, Origin};

    use super::*;

    fn section(seeds: &str) -> Section {
        let mut s = Section::new("cluster.static");
        s.set(
            "seeds",
            seeds,
            Origin::File {
                path: "node.conf".into(),
                line: 7,
            },
        );
        s
    }

    #[test]
    fn reads_comma_and_space_lists_and_drops_duplicates() {
        let c = StaticConfig::from_section(&section("a@h1, b@h2 c@::1,a@h1")).unwrap();
        let names: Vec<&str> = c.seeds.iter().map(NodeName::as_str).collect();
        assert_eq!(names, ["a@h1", "b@h2", "c@::1"]);
    }

    #[test]
    fn a_bad_seed_is_a_located_error_naming_it() {
        let e = StaticConfig::from_section(&section("a@h1, emqx2")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let text = e.to_string();
        assert!(
            text.starts_with("node.conf:7: cluster.static.seeds = "),
            "{text}"
        );
        assert!(text.contains("\"emqx2\""), "{text}");
        assert!(text.contains("expected name@host"), "{text}");
    }

    #[test]
    fn missing_or_empty_seeds_are_refused() {
        let e = StaticConfig::from_section(&Section::new("cluster.static")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("cluster.static.seeds"), "{e}");
        let e = StaticConfig::from_section(&section(" , ")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }
}

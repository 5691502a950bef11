//! The backend: one lookup per snapshot, every answer a candidate.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use autocluster_plugin::log::{Escaped, RateLimit};
use autocluster_plugin::{
    async_trait, Capabilities, Discovery, Member, Metadata, NodeName, Result, Revision, Snapshot,
};
use hickory_resolver::proto::rr::{Name, RData, Record};

use crate::config::{DnsConfig, RecordKind};
use crate::resolver::{Answer, Lookup};

/// Lists the hosts a DNS name resolves to as candidates; nothing to register.
#[derive(Debug)]
pub struct DnsDiscovery {
    config: DnsConfig,
    lookup: Lookup,
    polls: AtomicU64,
    invalid: AtomicU64,
    /// At most one warning a minute about answers that are not node hosts.
    warn_invalid: RateLimit,
}

impl DnsDiscovery {
    /// A backend over validated settings; reads the system resolver configuration when no
    /// servers are given. No network I/O.
    pub fn new(config: DnsConfig) -> Result<Self> {
        let lookup = Lookup::new(&config)?;
        Ok(DnsDiscovery {
            config,
            lookup,
            polls: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            warn_invalid: RateLimit::new(Duration::from_secs(60)),
        })
    }

    /// The settings it was built from.
    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// The addresses of the SRV targets the answer holds no address for, asked from the same
    /// servers. hickory keeps the additional A/AAAA records of one SRV target only (the last
    /// one of the answer), so without this the other targets would be left for the prober to
    /// resolve through the system resolver, which may not know them, and their addresses
    /// would change from poll to poll.
    async fn missing_glue(&self, records: &[Record]) -> BTreeMap<String, Vec<IpAddr>> {
        let known = glue(records);
        let targets: BTreeSet<String> = records
            .iter()
            .filter_map(|r| match r.data() {
                RData::SRV(srv) => Some(host_of(srv.target())),
                _ => None,
            })
            .filter(|t| !t.is_empty() && !known.contains_key(t))
            .collect();
        let found =
            futures::future::join_all(targets.iter().map(|t| self.lookup.addresses(t))).await;
        targets
            .into_iter()
            .zip(found)
            .filter(|(_, ips)| !ips.is_empty())
            .collect()
    }

    /// Turns an answer's records into sorted, deduplicated members; counts what is unusable.
    /// `resolved` holds addresses of SRV targets found apart from the answer.
    fn members(&self, records: &[Record], resolved: BTreeMap<String, Vec<IpAddr>>) -> Vec<Member> {
        let app = &self.config.app;
        // node -> addresses to probe it at (SRV only).
        let mut found: BTreeMap<NodeName, BTreeSet<String>> = BTreeMap::new();
        let mut invalid = 0u64;
        let mut first_invalid = None;
        let mut add =
            |host: String, addrs: Vec<String>| match NodeName::parse(&format!("{app}@{host}")) {
                Ok(node) => found.entry(node).or_default().extend(addrs),
                Err(e) => {
                    invalid += 1;
                    first_invalid.get_or_insert((host, e));
                }
            };
        match self.config.kind {
            RecordKind::A | RecordKind::Aaaa => {
                for r in records {
                    match r.data() {
                        RData::A(a) if self.config.kind == RecordKind::A => {
                            add(a.0.to_string(), vec![])
                        }
                        RData::AAAA(a) if self.config.kind == RecordKind::Aaaa => {
                            add(a.0.to_string(), vec![])
                        }
                        _ => {} // CNAMEs of the chain, and the like
                    }
                }
            }
            RecordKind::Srv => {
                // Addresses of targets: added to the answer by the server, or asked apart.
                let mut glue = glue(records);
                glue.extend(resolved);
                for r in records {
                    let RData::SRV(srv) = r.data() else { continue };
                    let target = host_of(srv.target());
                    if target.is_empty() {
                        continue; // "." : the service is decidedly not available here
                    }
                    let addrs = match glue.get(&target) {
                        Some(ips) => ips
                            .iter()
                            .map(|ip| SocketAddr::new(*ip, srv.port()).to_string())
                            .collect(),
                        None => vec![format!("{target}:{}", srv.port())],
                    };
                    add(target, addrs);
                }
            }
        }
        if let Some((host, e)) = first_invalid {
            self.invalid.fetch_add(invalid, Ordering::Relaxed);
            if let Some(held_back) = self.warn_invalid.allow() {
                let (host, e) = (Escaped::new(&host), Escaped::new(&e));
                tracing::warn!(
                    name = %self.config.name, %host, skipped = invalid, held_back,
                    "dns: skipping {invalid} answer(s) that are not node hosts, such as {host}: {e}"
                );
            }
        }
        found
            .into_iter()
            .map(|(node, addrs)| {
                let mut m = Member::bare(node);
                if !addrs.is_empty() {
                    m.meta = Some(Metadata::default().with_addrs(addrs.into_iter().collect()));
                }
                m
            })
            .collect()
    }
}

/// The addresses the answer holds, by host.
fn glue(records: &[Record]) -> BTreeMap<String, Vec<IpAddr>> {
    let mut glue: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for r in records {
        let ip = match r.data() {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        glue.entry(host_of(r.name())).or_default().push(ip);
    }
    glue
}

/// A DNS name as a host: lower case, without the trailing dot.
fn host_of(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

#[async_trait]
impl Discovery for DnsDiscovery {
    fn name(&self) -> &'static str {
        crate::NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::poll(self.config.interval).with_candidates_only()
    }

    /// One lookup: the candidates now. A failed lookup is an error (the engine keeps the last
    /// candidates, marked stale); NXDOMAIN or an empty answer is an empty snapshot.
    async fn snapshot(&self) -> Result<Snapshot> {
        let (name, kind, servers) = (&self.config.name, self.config.kind, self.lookup.servers());
        let answer = match self.lookup.lookup().await {
            Ok(a) => a,
            Err(e) => {
                let error = Escaped::new(&e);
                tracing::warn!(%name, %kind, %servers, %error, "dns: lookup failed; keeping the last candidates");
                return Err(e);
            }
        };
        let members = match answer {
            Answer::Records(records) => {
                let resolved = match self.config.kind {
                    RecordKind::Srv => self.missing_glue(&records).await,
                    RecordKind::A | RecordKind::Aaaa => BTreeMap::new(),
                };
                let members = self.members(&records, resolved);
                if members.is_empty() {
                    tracing::warn!(%name, %kind, %servers, "dns: the answer holds no usable {kind} record: no candidates");
                } else {
                    tracing::debug!(%name, %kind, %servers, candidates = members.len(), "dns: lookup answered");
                }
                members
            }
            Answer::Empty { code } => {
                tracing::warn!(%name, %kind, %servers, "dns: the server answered {code} with no {kind} records: no candidates");
                Vec::new()
            }
        };
        let revision = Revision(self.polls.fetch_add(1, Ordering::Relaxed) + 1);
        Ok(Snapshot { members, revision })
    }

    fn invalid_entries(&self) -> u64 {
        self.invalid.load(Ordering::Relaxed)
    }
}

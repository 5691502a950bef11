//! The hickory resolver, set up for polling: no cache, no hosts file, short timeouts.

use std::net::IpAddr;
use std::time::Duration;

use autocluster_plugin::log::Escaped;
use autocluster_plugin::{ErrorKind, Result};
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{Record, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;

use crate::config::{DnsConfig, RecordKind};
use crate::error::{classify, Failure};

/// How long one query to one server may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// What one lookup found.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The records of the answer (and the addresses of SRV targets the server added).
    Records(Vec<Record>),
    /// The server said there is nothing: `NXDOMAIN`, or `NOERROR` without records.
    Empty {
        /// `NXDOMAIN` or `NOERROR`.
        code: &'static str,
    },
}

/// The resolver and the servers it asks (for log lines and errors).
pub(crate) struct Lookup {
    resolver: TokioResolver,
    servers: String,
    name: String,
    kind: RecordKind,
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookup")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("servers", &self.servers)
            .finish()
    }
}

impl Lookup {
    /// A resolver for `config`: its servers, or the system's (`/etc/resolv.conf`), which is
    /// read now. No network I/O happens before the first lookup.
    pub(crate) fn new(config: &DnsConfig) -> Result<Lookup> {
        let (resolver_config, mut opts) = if config.servers.is_empty() {
            hickory_resolver::system_conf::read_system_conf().map_err(|e| {
                autocluster_plugin::Error::new(
                    ErrorKind::Config,
                    format!(
                        "cannot read the system resolver configuration (/etc/resolv.conf): {e}; \
                         set cluster.dns.servers"
                    ),
                )
                .with_backend(crate::NAME)
                .with_key("cluster.dns.servers")
            })?
        } else {
            let mut c = ResolverConfig::new();
            for addr in &config.servers {
                // UDP first; TCP when an answer is truncated (many SRV records).
                c.add_name_server(NameServerConfig::new(*addr, Protocol::Udp));
                c.add_name_server(NameServerConfig::new(*addr, Protocol::Tcp));
            }
            (c, ResolverOpts::default())
        };
        // Each poll must see what the server says now: nothing is cached between polls.
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        // DNS discovery asks DNS, not /etc/hosts.
        opts.use_hosts_file = ResolveHosts::Never;
        // One bounded attempt (hickory counts retries after the first): the engine retries
        // with backoff, and keeps the last candidates meanwhile.
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = 0;
        let mut servers: Vec<String> = resolver_config
            .name_servers()
            .iter()
            .map(|s| s.socket_addr.to_string())
            .collect();
        servers.dedup();
        let resolver =
            TokioResolver::builder_with_config(resolver_config, TokioConnectionProvider::default())
                .with_options(opts)
                .build();
        Ok(Lookup {
            resolver,
            servers: servers.join(","),
            name: config.name.clone(),
            kind: config.kind,
        })
    }

    /// The servers asked, comma separated.
    pub(crate) fn servers(&self) -> &str {
        &self.servers
    }

    /// The addresses of `host` (an SRV target) from the same servers: A records, or AAAA
    /// when it has none. Empty when the host has none or the lookup fails (logged).
    pub(crate) async fn addresses(&self, host: &str) -> Vec<IpAddr> {
        let fqdn = format!("{host}.");
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(found) => found.iter().collect(),
            Err(e) => {
                let (host, error) = (Escaped::new(host), Escaped::new(&e));
                tracing::debug!(%host, servers = %self.servers, %error, "dns: no address for an SRV target");
                Vec::new()
            }
        }
    }

    /// One lookup of the configured name and type.
    pub(crate) async fn lookup(&self) -> Result<Answer> {
        let ty = match self.kind {
            RecordKind::A => RecordType::A,
            RecordKind::Aaaa => RecordType::AAAA,
            RecordKind::Srv => RecordType::SRV,
        };
        // Nothing is kept between polls (the cache is also bounded to zero TTL above).
        self.resolver.clear_cache();
        // A trailing dot: the name is absolute, not subject to the search list.
        let fqdn = format!("{}.", self.name);
        match self.resolver.lookup(fqdn.as_str(), ty).await {
            Ok(found) => Ok(Answer::Records(found.records().to_vec())),
            Err(e) => match classify(e, &self.name, self.kind, &self.servers) {
                Failure::Empty(code) => Ok(Answer::Empty { code }),
                Failure::Error(e) => Err(e),
            },
        }
    }
}

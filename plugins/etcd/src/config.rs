//! The typed configuration of the etcd backend, read from `cluster.etcd.*`.

use std::fmt;
use std::time::Duration;

use autocluster_plugin::{BackendContext, Capabilities, Registrations, Result, Section};

pub use crate::timeouts::Timeouts;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Every key this backend reads (relative to `cluster.etcd`).
pub const KEYS: &[&str] = &[
    "server",
    "prefix",
    "node_ttl",
    "api",
    "ssl.cacertfile",
    "ssl.certfile",
    "ssl.keyfile",
    "username",
    "password",
    "lock_timeout",
    "watch_coalesce",
    "watch_coalesce_members",
];

/// The defaults of the keys that have one.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("prefix", "emqxcl"),
    ("node_ttl", "1m"),
    ("api", "v3"),
    ("lock_timeout", "30s"),
    ("watch_coalesce", "1s"),
    ("watch_coalesce_members", "200"),
];

/// The longest `watch_coalesce`: a pause of the watch is bounded by its progress period
/// (at most 5 s) anyway.
pub const MAX_WATCH_COALESCE: Duration = Duration::from_secs(5);

fn default_of(key: &str) -> &'static str {
    DEFAULTS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .unwrap_or("")
}

/// Which etcd API the backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// gRPC v3 (leases, watches, the Lock API): the default.
    V3,
    /// The HTTP/JSON v2 API EMQX 4.x speaks (etcd <= 3.5 with `--enable-v2`).
    V2,
}

/// Client TLS material, read and checked when the backend is built.
#[derive(Clone, Default)]
pub struct TlsConfig {
    /// PEM of the CA(s) to trust; `None`: the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM certificate chain and key to present to the server.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field(
                "ca",
                &self.ca_pem.as_ref().map_or("system roots", |_| "file"),
            )
            .field("client_cert", &self.identity.is_some())
            .finish()
    }
}

/// The etcd backend's settings.
#[derive(Clone)]
pub struct EtcdConfig {
    /// Server URLs (`http://127.0.0.1:2379`), without a trailing slash; several fail over.
    pub servers: Vec<String>,
    /// The key prefix, without slashes around it (`emqxcl`).
    pub prefix: String,
    /// The lease TTL of this node's key, whole seconds.
    pub node_ttl: Duration,
    /// v3 or v2.
    pub api: Api,
    /// Present when the servers are `https://`.
    pub tls: Option<TlsConfig>,
    /// etcd user name.
    pub username: Option<String>,
    /// etcd password (never printed).
    pub password: Option<String>,
    /// How long `lock` waits when the caller gives no bound.
    pub lock_timeout: Duration,
    /// Changes that come closer together than this are read in batches (zero: each as it
    /// comes); see `cluster.etcd.watch_coalesce` in docs/backends/etcd.md.
    pub watch_coalesce: Duration,
    /// Bursts are read in batches only while the prefix holds at least this many nodes.
    pub watch_coalesce_members: u64,
    /// `cluster.call_timeout`, the engine's bound on every call (not a `cluster.etcd` key:
    /// [`crate::build`] takes it from the context): the transport's timeouts follow it, see
    /// [`Timeouts`].
    pub call_timeout: Duration,
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("servers", &self.servers)
            .field("prefix", &self.prefix)
            .field("node_ttl", &self.node_ttl)
            .field("api", &self.api)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "******"))
            .field("lock_timeout", &self.lock_timeout)
            .field("watch_coalesce", &self.watch_coalesce)
            .field("watch_coalesce_members", &self.watch_coalesce_members)
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

impl EtcdConfig {
    /// Reads and checks `section` (keys relative to `cluster.etcd`); every error is of kind
    /// `Config` and names the key (and its file and line).
    pub fn from_section(s: &Section) -> Result<EtcdConfig> {
        let servers = parse_servers(s)?;
        let https = servers[0].starts_with("https://");

        let prefix = s
            .str("prefix")
            .unwrap_or(default_of("prefix"))
            .trim_matches('/')
            .to_string();
        if prefix.is_empty() || prefix.contains(char::is_whitespace) || prefix.contains("//") {
            return Err(s.error("prefix", "expected a key prefix such as emqxcl"));
        }

        let node_ttl = match s.duration("node_ttl")? {
            Some(d) => d,
            None => Duration::from_secs(60),
        };
        if node_ttl < Duration::from_secs(1) {
            return Err(s.error(
                "node_ttl",
                "expected at least 1s (etcd leases count seconds)",
            ));
        }
        // etcd leases count whole seconds: round up.
        let node_ttl =
            Duration::from_secs(node_ttl.as_secs() + u64::from(node_ttl.subsec_nanos() > 0));

        let api = match s.str("api").unwrap_or(default_of("api")) {
            "v3" => Api::V3,
            "v2" => Api::V2,
            _ => return Err(s.error("api", "expected v3 or v2")),
        };

        if !https {
            refuse_tls_files(s)?;
        }
        let ca = read_pem(s, "ssl.cacertfile", Pem::Certs)?;
        let cert = read_pem(s, "ssl.certfile", Pem::Certs)?;
        let key = read_pem(s, "ssl.keyfile", Pem::Key)?;
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (Some(_), None) => {
                return Err(s.error(
                    "ssl.keyfile",
                    "is required when cluster.etcd.ssl.certfile is set",
                ))
            }
            (None, Some(_)) => {
                return Err(s.error(
                    "ssl.certfile",
                    "is required when cluster.etcd.ssl.keyfile is set",
                ))
            }
            (None, None) => None,
        };
        let tls = https.then_some(TlsConfig {
            ca_pem: ca,
            identity,
        });

        let username = s.str("username").map(str::to_string);
        let password = s.str("password").map(str::to_string);
        match (&username, &password) {
            (Some(_), None) => {
                return Err(s.error("username", "is set but cluster.etcd.password is not"))
            }
            (None, Some(_)) => {
                // Never s.error("password", ..): that would print the value.
                return Err(s.error("username", "is required when cluster.etcd.password is set"));
            }
            _ => {}
        }

        let lock_timeout = s
            .duration("lock_timeout")?
            .unwrap_or(Duration::from_secs(30));

        let watch_coalesce = s
            .duration("watch_coalesce")?
            .unwrap_or(Duration::from_secs(1));
        if watch_coalesce > MAX_WATCH_COALESCE {
            return Err(s.error(
                "watch_coalesce",
                "expected a duration from 0s (every change as it comes) to 5s, such as 1s",
            ));
        }

        let watch_coalesce_members = s
            .parse::<u64>(
                "watch_coalesce_members",
                "a whole number of nodes such as 200 (0: whatever the size)",
            )?
            .unwrap_or(200);

        Ok(EtcdConfig {
            servers,
            prefix,
            node_ttl,
            api,
            tls,
            username,
            password,
            lock_timeout,
            watch_coalesce,
            watch_coalesce_members,
            call_timeout: BackendContext::DEFAULT_CALL_TIMEOUT,
        })
    }

    /// The transport's timeouts, derived from `call_timeout` and `node_ttl`.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts::new(self.call_timeout, self.node_ttl)
    }

    /// What the backend offers, v3 and v2 alike: a push view, registrations on a server
    /// lease of `node_ttl` (v2: a key TTL), kept alive every third of it, and the lock.
    pub(crate) fn capabilities(&self) -> Capabilities {
        let ttl = self.node_ttl;
        // A third of the TTL leaves two more tries before the lease runs out.
        Capabilities::push()
            .with_registration(
                Registrations::ServerLease,
                ttl,
                (ttl / 3).max(Duration::from_millis(100)),
            )
            .with_lock()
            .with_progress_every(self.timeouts().progress_every)
    }

    /// The servers, comma separated, for error contexts.
    pub fn endpoints(&self) -> String {
        self.servers.join(",")
    }
}

/// `http://` servers with TLS files set: refused (TLS is never dropped silently), before the
/// files are read, with both fixes.
fn refuse_tls_files(s: &Section) -> Result<()> {
    let set: Vec<String> = ["ssl.cacertfile", "ssl.certfile", "ssl.keyfile"]
        .into_iter()
        .filter_map(|k| {
            let origin = &s.get(k)?.origin;
            s.str(k)?;
            Some(format!("{} ({origin})", s.full_key(k)))
        })
        .collect();
    if set.is_empty() {
        return Ok(());
    }
    Err(s.error(
        "server",
        format!(
            "the servers are plain http:// but {} set, and TLS is never dropped silently: \
             to connect with TLS, write the servers as https:// URLs; to connect without it, \
             remove the cluster.etcd.ssl.* lines",
            match set.len() {
                1 => format!("{} is", set[0]),
                _ => format!("{} are", set.join(", ")),
            }
        ),
    ))
}

fn parse_servers(s: &Section) -> Result<Vec<String>> {
    let list = s.list("server");
    if list.is_empty() {
        return Err(s.error(
            "server",
            "is required: a comma list of http:// or https:// URLs, e.g. http://127.0.0.1:2379",
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for raw in &list {
        let url = reqwest::Url::parse(raw).map_err(|_| {
            s.error(
                "server",
                format!(
                    "{raw:?}: expected an http:// or https:// URL such as http://127.0.0.1:2379"
                ),
            )
        })?;
        let ok = matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some_and(|h| !h.is_empty())
            && url.path() == "/"
            && url.query().is_none()
            && url.username().is_empty();
        if !ok {
            return Err(s.error(
                "server",
                format!("{raw:?}: expected an http:// or https:// URL with a host and no path, such as http://127.0.0.1:2379"),
            ));
        }
        // Without a port, etcd's client port rather than 80/443.
        let port = url.port().unwrap_or(2379);
        let host = url.host_str().unwrap_or_default();
        out.push(format!("{}://{host}:{port}", url.scheme()));
    }
    if out.iter().any(|u| u.starts_with("https://")) && out.iter().any(|u| u.starts_with("http://"))
    {
        return Err(s.error(
            "server",
            "expected all URLs to be http:// or all https://, not a mix",
        ));
    }
    Ok(out)
}

enum Pem {
    Certs,
    Key,
}

fn read_pem(s: &Section, key: &str, what: Pem) -> Result<Option<Vec<u8>>> {
    let Some(path) = s.str(key) else {
        return Ok(None);
    };
    let bytes =
        std::fs::read(path).map_err(|e| s.error(key, format!("cannot read {path}: {e}")))?;
    match what {
        Pem::Certs => {
            let mut n = 0;
            for c in CertificateDer::pem_slice_iter(&bytes) {
                c.map_err(|e| {
                    s.error(
                        key,
                        format!("{path} is not a valid PEM certificate file: {e}"),
                    )
                })?;
                n += 1;
            }
            if n == 0 {
                return Err(s.error(
                    key,
                    format!("expected a PEM file with a CERTIFICATE; {path} has none"),
                ));
            }
        }
        Pem::Key => {
            PrivateKeyDer::from_pem_slice(&bytes)
                .map_err(|e| s.error(key, format!("expected a PEM private key; {path}: {e}")))?;
        }
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use autocluster_plugin::{ErrorKind, Origin};

    fn section(pairs: &[(&str, &str)]) -> Section {
        let mut s = Section::new("cluster.etcd");
        for (i, (k, v)) in pairs.iter().enumerate() {
            s.set(
                *k,
                *v,
                Origin::File {
                    path: "node.conf".into(),
                    line: i + 1,
                },
            );
        }
        s
    }

    #[test]
    fn defaults() {
        let c = EtcdConfig::from_section(&section(&[("server", "http://127.0.0.1:2379")])).unwrap();
        assert_eq!(c.servers, vec!["http://127.0.0.1:2379"]);
        assert_eq!(c.prefix, "emqxcl");
        assert_eq!(c.node_ttl, Duration::from_secs(60));
        assert_eq!(c.api, Api::V3);
        assert!(c.tls.is_none());
        assert_eq!(c.lock_timeout, Duration::from_secs(30));
    }

    #[test]
    fn several_servers_and_rounding() {
        let c = EtcdConfig::from_section(&section(&[
            ("server", "http://a:2379, http://b:2380/"),
            ("node_ttl", "1500ms"),
            ("prefix", "/p/"),
            ("api", "v2"),
        ]))
        .unwrap();
        assert_eq!(c.servers, vec!["http://a:2379", "http://b:2380"]);
        assert_eq!(c.node_ttl, Duration::from_secs(2));
        assert_eq!(c.prefix, "p");
        assert_eq!(c.api, Api::V2);
    }

    #[test]
    fn errors_name_the_key() {
        for (pairs, key) in [
            (vec![], "cluster.etcd.server"),
            (vec![("server", "127.0.0.1:2379")], "cluster.etcd.server"),
            (vec![("server", "http://h/x")], "cluster.etcd.server"),
            (
                vec![("server", "http://a,https://b")],
                "cluster.etcd.server",
            ),
            (
                vec![("server", "http://a"), ("api", "v4")],
                "cluster.etcd.api",
            ),
            (
                vec![("server", "http://a"), ("node_ttl", "10ms")],
                "cluster.etcd.node_ttl",
            ),
            (
                vec![
                    ("server", "https://a"),
                    ("ssl.cacertfile", "/nonexistent/ca.pem"),
                ],
                "cluster.etcd.ssl.cacertfile",
            ),
            // the scheme is checked first: TLS files with http:// are refused as such
            (
                vec![
                    ("server", "http://a"),
                    ("ssl.cacertfile", "/nonexistent/ca.pem"),
                ],
                "cluster.etcd.server",
            ),
            (
                vec![("server", "http://a"), ("username", "u")],
                "cluster.etcd.username",
            ),
        ] {
            let e = EtcdConfig::from_section(&section(&pairs)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert_eq!(e.context().key.as_deref(), Some(key), "{e}");
        }
    }

    #[test]
    fn password_never_printed() {
        let s = section(&[("server", "http://a"), ("password", "s3cret-pw")]);
        let e = EtcdConfig::from_section(&s).unwrap_err();
        assert!(!e.to_string().contains("s3cret-pw"), "{e}");
        let c = EtcdConfig::from_section(&section(&[
            ("server", "http://a"),
            ("username", "root"),
            ("password", "s3cret-pw"),
        ]))
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cret-pw"));
    }
}

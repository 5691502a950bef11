//! etcd's own counters, read from its `/metrics` endpoint (served on the client URL).

use std::collections::HashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::probes::BoxError;

/// One scrape: every sample line, `name{labels}` -> value.
#[derive(Debug, Clone, Default)]
pub struct Metrics(HashMap<String, f64>);

impl Metrics {
    pub async fn scrape(port: u16) -> Result<Metrics, BoxError> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut body = String::new();
        s.read_to_string(&mut body).await?;
        Metrics::parse(&body)
    }

    /// The samples of a `/metrics` answer (the HTTP head above them names no series read
    /// here).
    pub fn parse(body: &str) -> Result<Metrics, BoxError> {
        let mut m = HashMap::new();
        for line in body.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if let Some((k, v)) = line.rsplit_once(' ') {
                if let Ok(v) = v.parse::<f64>() {
                    m.insert(k.to_string(), v);
                }
            }
        }
        if m.is_empty() {
            return Err("etcd's /metrics answered no samples".into());
        }
        Ok(Metrics(m))
    }

    /// The sum of every sample of `name` whose labels contain each of `labels`
    /// (`grpc_method="Range"`); `None` when etcd exposes no such sample.
    pub fn sum(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let mut found = None;
        for (k, v) in &self.0 {
            let (n, rest) = k.split_once('{').unwrap_or((k.as_str(), ""));
            if n == name && labels.iter().all(|l| rest.contains(l)) {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    /// The sum of the first of `names` that etcd exposes, or an error: a series that is not
    /// there must not read as zero.
    pub fn series(&self, names: &[&str], labels: &[&str]) -> Result<f64, BoxError> {
        names
            .iter()
            .find_map(|n| self.sum(n, labels))
            .ok_or_else(|| {
                format!(
                    "etcd's /metrics has no {} {{{}}}: this figure cannot be measured",
                    names.join(" or "),
                    labels.join(",")
                )
                .into()
            })
    }

    /// A gRPC counter of one of etcd's own methods (`Range`, `Put`, `LeaseKeepAlive`, `Watch`,
    /// ...; not the health service's `Watch`).
    fn grpc(&self, counter: &str, method: &str) -> Result<f64, BoxError> {
        let method = format!("grpc_method=\"{method}\"");
        self.series(&[counter], &[&method, "grpc_service=\"etcdserverpb."])
    }

    /// Completed calls (or streams) of a gRPC method.
    pub fn handled(&self, method: &str) -> Result<f64, BoxError> {
        self.grpc("grpc_server_handled_total", method)
    }

    /// Streams (or calls) of a gRPC method started.
    pub fn started(&self, method: &str) -> Result<f64, BoxError> {
        self.grpc("grpc_server_started_total", method)
    }

    /// Messages received on a gRPC method's streams (one per keep-alive).
    pub fn received(&self, method: &str) -> Result<f64, BoxError> {
        self.grpc("grpc_server_msg_received_total", method)
    }

    /// An mvcc counter or gauge (`range_total`, `watcher_total`, ...): `etcd_mvcc_*` since
    /// etcd 3.5 for some, `etcd_debugging_mvcc_*` before.
    pub fn mvcc(&self, what: &str) -> Result<f64, BoxError> {
        self.series(
            &[
                &format!("etcd_mvcc_{what}"),
                &format!("etcd_debugging_mvcc_{what}"),
            ],
            &[],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "# HELP x\n\
        grpc_server_msg_received_total{grpc_method=\"LeaseKeepAlive\",grpc_service=\"etcdserverpb.Lease\",grpc_type=\"bidi_stream\"} 7\n\
        grpc_server_started_total{grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 2\n\
        grpc_server_started_total{grpc_method=\"Watch\",grpc_service=\"grpc.health.v1.Health\",grpc_type=\"server_stream\"} 5\n\
        etcd_debugging_mvcc_range_total 3\n\
        etcd_mvcc_range_total 4\n\
        etcd_debugging_mvcc_watcher_total 6\n";

    #[test]
    fn counters_are_read_by_method_and_service() {
        let m = Metrics::parse(BODY).expect("samples");
        assert_eq!(m.received("LeaseKeepAlive").unwrap(), 7.0);
        // The health service's Watch is not etcd's.
        assert_eq!(m.started("Watch").unwrap(), 2.0);
        // etcd 3.5's name first, 3.4's otherwise.
        assert_eq!(m.mvcc("range_total").unwrap(), 4.0);
        assert_eq!(m.mvcc("watcher_total").unwrap(), 6.0);
    }

    #[test]
    fn a_missing_series_is_an_error_not_a_zero() {
        let m = Metrics::parse(BODY).expect("samples");
        let e = m.handled("Range").unwrap_err().to_string();
        assert!(e.contains("grpc_server_handled_total"), "{e}");
        assert!(m.mvcc("put_total").is_err());
    }
}

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
    /// (`grpc_method="Range"`).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| {
                let (n, rest) = k.split_once('{').unwrap_or((k.as_str(), ""));
                n == name && labels.iter().all(|l| rest.contains(l))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Completed unary calls of a gRPC method (`Range`, `Put`, `Txn`, `LeaseGrant`, ...).
    pub fn handled(&self, method: &str) -> f64 {
        self.sum(
            "grpc_server_handled_total",
            &[&format!("grpc_method=\"{method}\"")],
        )
    }

    /// Streams (or calls) of a gRPC method started.
    pub fn started(&self, method: &str) -> f64 {
        self.sum(
            "grpc_server_started_total",
            &[&format!("grpc_method=\"{method}\"")],
        )
    }

    /// Messages received on a gRPC method's streams (one per keep-alive).
    pub fn received(&self, method: &str) -> f64 {
        self.sum(
            "grpc_server_msg_received_total",
            &[&format!("grpc_method=\"{method}\"")],
        )
    }

    pub fn get(&self, name: &str) -> f64 {
        self.sum(name, &[])
    }
}

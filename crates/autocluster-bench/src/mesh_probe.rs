//! Reading an agent of the mesh run through its admin endpoint: a plain HTTP/1.1 GET of
//! `/metrics` (small at any cluster size, unlike `/members`), and the counters in it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::probes::BoxError;

/// The most a `/metrics` answer may hold; more is an error, not a larger buffer.
const MAX_ANSWER: usize = 1024 * 1024;

/// `GET path` on `addr` (Connection: close), bounded by `timeout`: the body of a 200 answer.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, BoxError> {
    let fetch = async {
        let mut s = TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_ANSWER {
                return Err::<Vec<u8>, BoxError>(format!("{addr}{path}: answer over 1 MiB").into());
            }
        }
        Ok(buf)
    };
    let buf = tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| format!("{addr}{path}: no answer within {timeout:?}"))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}{path}: not an HTTP answer"))?;
    if !head.starts_with("HTTP/1.1 200") {
        let first = head.lines().next().unwrap_or("").chars().take(80);
        return Err(format!("{addr}{path}: {}", first.collect::<String>()).into());
    }
    // axum answers /metrics with a length, not chunked; a chunked body would not parse as
    // metrics and reads as an error below.
    Ok(body.to_string())
}

/// The counters of one agent that the mesh table reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Members in the view (running and stopped).
    pub members: u64,
    /// Backend calls that answered "lease lost" (keep-alive, refresh).
    pub lease_lost: u64,
    /// Registrations written (the first one included).
    pub registrations: u64,
    /// Full resyncs.
    pub resyncs: u64,
    /// Backend calls that timed out.
    pub timeouts: u64,
    /// Backend calls that failed as unavailable.
    pub unavailable: u64,
    /// Keep-alives that failed.
    pub renewal_failures: u64,
    /// Keep-alives that succeeded.
    pub renewals: u64,
    /// Watches ended as fallen behind (`compacted`: a resync follows).
    pub compacted: u64,
    /// Watches reopened because they said nothing for three progress periods.
    pub silences: u64,
}

impl Counters {
    /// Reads the counters out of a Prometheus text answer; a missing family reads as an
    /// error (a renamed metric must not read as zero).
    pub fn parse(text: &str) -> Result<Counters, BoxError> {
        let mut c = Counters::default();
        let mut seen_members = false;
        let mut seen_regs = false;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.trim().parse::<f64>() else {
                continue;
            };
            let v = v as u64;
            if name.starts_with("autocluster_members{") {
                c.members += v;
                seen_members = true;
            } else if name.starts_with("autocluster_backend_calls_total{") {
                if name.contains("outcome=\"lease_lost\"") {
                    c.lease_lost += v;
                } else if name.contains("outcome=\"timeout\"") {
                    c.timeouts += v;
                } else if name.contains("outcome=\"unavailable\"") {
                    c.unavailable += v;
                } else if name.contains("outcome=\"compacted\"") {
                    c.compacted += v;
                }
            } else if name == "autocluster_registrations_total" {
                c.registrations = v;
                seen_regs = true;
            } else if name == "autocluster_resyncs_total" {
                c.resyncs = v;
            } else if name == "autocluster_lease_renewal_failures_total" {
                c.renewal_failures = v;
            } else if name == "autocluster_lease_renewals_total" {
                c.renewals = v;
            } else if name == "autocluster_watch_silences_total" {
                c.silences = v;
            }
        }
        if !seen_members || !seen_regs {
            return Err("the agent's /metrics has no autocluster_members or \
                        autocluster_registrations_total"
                .into());
        }
        Ok(c)
    }

    /// The sum of `self` and `o`.
    pub fn add(&mut self, o: &Counters) {
        self.members += o.members;
        self.lease_lost += o.lease_lost;
        self.registrations += o.registrations;
        self.resyncs += o.resyncs;
        self.timeouts += o.timeouts;
        self.unavailable += o.unavailable;
        self.renewal_failures += o.renewal_failures;
        self.renewals += o.renewals;
        self.compacted += o.compacted;
        self.silences += o.silences;
    }
}

/// CPU time (user + system) a process used so far, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields start after its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let hz = 100.0; // USER_HZ on Linux
    Some((utime + stime) / hz)
}

/// CPU time a process's threads used so far, to the nanosecond: the sum of
/// `/proc/<pid>/task/*/schedstat` (the scheduler's own count; `/proc/<pid>/stat` gives whole
/// ticks, which reads a light process as 0). Threads that already ended are not counted.
pub fn cpu_seconds_precise(pid: u32) -> Option<f64> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        ns += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(ns as f64 / 1e9)
}

/// The pid of the process whose command line holds `needle` (the etcd the testkit started,
/// found by its client URL).
pub fn pid_with_arg(needle: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.split('\0').any(|a| a.contains(needle)) {
            return Some(pid);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_come_from_the_families_and_a_missing_one_is_an_error() {
        let text = "# HELP x\nautocluster_members{status=\"running\"} 998\n\
            autocluster_members{status=\"stopped\"} 2\n\
            autocluster_backend_calls_total{operation=\"keep_alive\",outcome=\"lease_lost\"} 3\n\
            autocluster_backend_calls_total{operation=\"refresh\",outcome=\"lease_lost\"} 1\n\
            autocluster_backend_calls_total{operation=\"register\",outcome=\"timeout\"} 5\n\
            autocluster_backend_calls_total{operation=\"keep_alive\",outcome=\"ok\"} 50\n\
            autocluster_registrations_total 2\nautocluster_resyncs_total 4\n";
        let c = Counters::parse(text).expect("parsed");
        assert_eq!(c.members, 1000);
        assert_eq!(c.lease_lost, 4);
        assert_eq!(c.timeouts, 5);
        assert_eq!(c.registrations, 2);
        assert_eq!(c.resyncs, 4);
        assert!(Counters::parse("autocluster_resyncs_total 4\n").is_err());
    }

    #[test]
    fn cpu_time_of_this_process_reads() {
        assert!(cpu_seconds(std::process::id()).is_some());
    }
}

//! `autocluster status`: EMQX's one-line cluster status, a table of the members, and the
//! health, from the agent's `GET /status` read as the library's [`StatusReport`], and the
//! agent's warnings.

use std::fmt::Write;
use std::time::SystemTime;

use autocluster::plugin::log::Escaped;
use autocluster::{Health, MemberEntry, Status, StatusReport};

use crate::admin::AgentStatus;
use crate::cli::StatusArgs;
use crate::client::Agent;
use crate::{print_out, Failure};

/// Asks the agent and prints its answer.
pub async fn run(args: &StatusArgs) -> Result<(), Failure> {
    let agent = Agent::locate(&args.agent)?;
    let status: AgentStatus = agent.get_json("/status").await?;
    if args.json {
        let text = serde_json::to_string_pretty(&status).map_err(Failure::runtime)?;
        print_out(&(text + "\n"))
    } else {
        print_out(&render(&status))
    }
}

/// The text form of an agent's status: the report, then a `warning:` line for each of the
/// agent's warnings.
pub fn render(status: &AgentStatus) -> String {
    let report = &status.report;
    let mut out = String::new();
    let _ = writeln!(out, "{}", report.emqx_status_line());
    let _ = writeln!(out);
    out.push_str(&members_table(&report.members));
    let _ = writeln!(out);
    out.push_str(&health(report));
    out.push_str(&crate::formation::status_lines(report));
    if !status.warnings.is_empty() {
        let _ = writeln!(out);
        for warning in &status.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
    }
    out
}

fn members_table(members: &[MemberEntry]) -> String {
    let mut rows = vec![[
        "NODE",
        "STATUS",
        "INCARNATION",
        "SINCE",
        "VERSION",
        "ADDRS",
        "LABELS",
        "ENDPOINTS",
    ]
    .map(String::from)];
    for m in members {
        let mut state = match m.status {
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
        .to_string();
        if m.vanishing {
            state.push_str(" (vanishing)");
        }
        let incarnation = match m.member.incarnation.0 {
            0 => "-".to_string(),
            _ => m.member.incarnation.to_string(),
        };
        let meta = m.member.meta.as_ref();
        let version = meta.and_then(|meta| meta.version.clone());
        let addrs = meta
            .map(|meta| meta.addrs.join(","))
            .filter(|a| !a.is_empty());
        let pairs = |map: Option<&std::collections::BTreeMap<String, String>>| {
            let text = map
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            if text.is_empty() {
                "-".to_string()
            } else {
                text
            }
        };
        // What a peer registered is shown escaped: no terminal control reaches the screen.
        let cell = |text: String| Escaped::new(text).max(200).to_string();
        rows.push([
            m.member.node.to_string(),
            state,
            incarnation,
            utc(m.since),
            cell(version.unwrap_or_else(|| "-".into())),
            cell(addrs.unwrap_or_else(|| "-".into())),
            cell(pairs(meta.map(|m| &m.labels))),
            cell(pairs(meta.map(|m| &m.endpoints))),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if rows.len() == 1 {
        let _ = writeln!(out, "(no members)");
    }
    out
}

/// How fresh the view is, in words: "syncing" until this node has read a first snapshot and
/// sees itself in its view; "stale" while the backend is not read live; "failed" once the
/// engine stopped on its own.
fn freshness(h: &Health) -> &'static str {
    if h.failed.is_some() {
        "failed (the last view, no longer followed)"
    } else if !h.synced || (!h.in_view && !h.stale) {
        "syncing"
    } else if h.stale {
        "stale (the last known view)"
    } else {
        "fresh"
    }
}

fn health(status: &StatusReport) -> String {
    let h = &status.health;
    let yes_no = |v: bool| if v { "yes" } else { "no" };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node:        {} (cluster {})",
        status.node, status.cluster
    );
    let _ = writeln!(out, "backend:     {}", h.backend);
    let mut registered = yes_no(h.registered).to_string();
    if let Some(i) = h.incarnation.filter(|i| i.0 != 0) {
        let _ = write!(registered, " (incarnation {i})");
    }
    let _ = writeln!(out, "registered:  {registered}");
    let revision = status.revision.0;
    let _ = writeln!(out, "view:        {}, revision {revision}", freshness(h));
    let ready = match h.not_ready_because() {
        None => "yes".to_string(),
        Some(why) => format!("no ({why})"),
    };
    let _ = writeln!(out, "ready:       {ready}");
    let last_ok = h.last_success.map_or("never".into(), utc);
    let _ = writeln!(out, "last success: {last_ok}");
    match &h.last_error {
        Some(e) => {
            let at = h
                .last_error_at
                .map_or(String::new(), |t| format!(" at {}", utc(t)));
            let failures = h.consecutive_failures;
            let _ = writeln!(out, "last error:  {e}{at} ({failures} failures in a row)");
        }
        None => {
            let _ = writeln!(out, "last error:  none");
        }
    }
    out
}

/// `t` as `2024-11-24 21:17:03Z`; a time past year 9999 as seconds since the epoch.
fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|date| date.format(format).ok())
        .unwrap_or_else(|| format!("{secs} s after the Unix epoch"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn at_ms(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(at_ms(0)), "1970-01-01 00:00:00Z");
        assert_eq!(utc(at_ms(951_782_400_000)), "2000-02-29 00:00:00Z");
        assert_eq!(utc(at_ms(1_732_483_023_500)), "2024-11-24 21:17:03Z");
        assert_eq!(
            utc(at_ms(u64::MAX)),
            "18446744073709551 s after the Unix epoch"
        );
    }

    /// A `/status` body as an agent sends it.
    fn report(stale: bool) -> AgentStatus {
        serde_json::from_value(json!({
            "node": "a@h", "backend": "etcd", "cluster": "emqxcl", "revision": 7, "stale": stale,
            "running_nodes": ["a@h"], "stopped_nodes": ["b@h"],
            "members": [
                {"node": "a@h", "status": "running", "incarnation": "ff", "since": 0,
                 "vanishing": false, "created": 0,
                 "meta": {"version": "0.1.0", "addrs": ["127.0.0.1:4370"],
                          "labels": {"zone": "eu-1", "evil": "\u{1b}[2J"},
                          "endpoints": {"mqtt": "10.0.0.5:1883"}}},
                {"node": "b@h", "status": "stopped", "incarnation": "0", "since": 0,
                 "vanishing": true, "created": 0, "meta": null},
            ],
            "health": {"backend": "etcd", "registered": true, "incarnation": 255,
                       "stale": stale, "synced": true, "in_view": true,
                       "last_error": "etcd watch: down", "last_error_at": 1_732_483_023_500u64,
                       "consecutive_failures": 3},
            "warnings": ["node.cookie is the public default"],
        }))
        .expect("a /status body")
    }

    #[test]
    fn the_text_has_the_emqx_line_the_table_and_the_health() {
        let text = render(&report(false));
        assert!(
            text.starts_with("Cluster status: [{running_nodes,['a@h']},{stopped_nodes,['b@h']}]\n"),
            "{text}"
        );
        assert!(
            text.contains("a@h   running              ff           1970-01-01 00:00:00Z  0.1.0    127.0.0.1:4370  evil=\\u{1b}[2J,zone=eu-1  mqtt=10.0.0.5:1883\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "b@h   stopped (vanishing)  -            1970-01-01 00:00:00Z  -        -               -                         -\n"
            ),
            "{text}"
        );
        assert!(text.contains("node:        a@h (cluster emqxcl)"), "{text}");
        assert!(text.contains("backend:     etcd"), "{text}");
        assert!(text.contains("registered:  yes (incarnation ff)"), "{text}");
        assert!(text.contains("view:        fresh, revision 7\n"), "{text}");
        assert!(text.contains("last success: never"), "{text}");
        assert!(
            text.contains(
                "last error:  etcd watch: down at 2024-11-24 21:17:03Z (3 failures in a row)"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("\nwarning: node.cookie is the public default\n"),
            "{text}"
        );
        let text = render(&report(true));
        assert!(
            text.contains("view:        stale (the last known view), revision 7"),
            "{text}"
        );
    }

    #[test]
    fn the_json_is_printed_as_the_agent_sent_it() {
        let body = serde_json::to_value(report(false)).unwrap();
        let again: AgentStatus = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(serde_json::to_value(again).unwrap(), body);
        assert_eq!(body["members"][0]["incarnation"], "ff");
        assert_eq!(
            body["health"]["incarnation"], "ff",
            "hex, as every incarnation"
        );
        assert_eq!(body["warnings"][0], "node.cookie is the public default");
        // An agent from before warnings: none.
        let mut old = body;
        old.as_object_mut().unwrap().remove("warnings");
        let old: AgentStatus = serde_json::from_value(old).unwrap();
        assert!(old.warnings.is_empty());
    }

    #[test]
    fn syncing_until_the_node_sees_itself_and_ready_says_why_not() {
        // Right after start: registered, a first snapshot read, not yet in its own view.
        let mut r = report(false);
        r.report.health.in_view = false;
        let text = render(&r);
        assert!(
            text.contains("view:        syncing, revision 7\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "ready:       no (syncing: this node does not see itself in its view yet)"
            ),
            "{text}"
        );
        r.report.health.in_view = true;
        assert!(render(&r).contains("ready:       yes\n"));
        r.report.health.synced = false;
        assert!(render(&r).contains("view:        syncing, revision 7"));
        r.report.health.failed = Some("the engine's view task panicked: boom".into());
        let text = render(&r);
        assert!(text.contains("view:        failed"), "{text}");
        assert!(
            text.contains("ready:       no (failed: the engine's view task panicked: boom)"),
            "{text}"
        );
    }
}

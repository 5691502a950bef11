//! `autocluster status`: EMQX's one-line cluster status, a table of the members, and the
//! health, from the agent's `GET /status`.

use std::fmt::Write;

use serde_json::Value;

use crate::cli::StatusArgs;
use crate::client::Agent;
use crate::{print_out, Failure};

/// Asks the agent and prints its answer.
pub async fn run(args: &StatusArgs) -> Result<(), Failure> {
    let agent = Agent::locate(&args.agent)?;
    let status = agent.get_json("/status").await?;
    if args.json {
        let text = serde_json::to_string_pretty(&status).map_err(Failure::runtime)?;
        print_out(&(text + "\n"))
    } else {
        print_out(&render(&status))
    }
}

/// The text form of a `/status` object.
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", emqx_status_line(status));
    let _ = writeln!(out);
    out.push_str(&members_table(status));
    let _ = writeln!(out);
    out.push_str(&health(status));
    out
}

/// `Cluster status: [{running_nodes,['a@h','b@h']}]`, with `,{stopped_nodes,[...]}` before
/// the final `]` when some listed node does not run: the same as the library's
/// `View::emqx_status_line`.
pub fn emqx_status_line(status: &Value) -> String {
    let list = |key: &str| {
        status[key]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|n| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let mut line = format!(
        "Cluster status: [{{running_nodes,[{}]}}",
        list("running_nodes")
    );
    let stopped = list("stopped_nodes");
    if !stopped.is_empty() {
        let _ = write!(line, ",{{stopped_nodes,[{stopped}]}}");
    }
    line.push(']');
    line
}

fn members_table(status: &Value) -> String {
    let mut rows =
        vec![["NODE", "STATUS", "INCARNATION", "SINCE", "VERSION", "ADDRS"].map(String::from)];
    for m in status["members"].as_array().into_iter().flatten() {
        let text = |v: &Value| v.as_str().map(str::to_string);
        let mut state = text(&m["status"]).unwrap_or_else(|| "?".into());
        if m["vanishing"].as_bool() == Some(true) {
            state.push_str(" (vanishing)");
        }
        let incarnation = match m["incarnation"].as_str() {
            Some("0") | Some("") | None => "-".to_string(),
            Some(hex) => hex.to_string(),
        };
        let since = m["since"].as_u64().map_or("-".into(), utc);
        let meta = &m["meta"];
        let version = text(&meta["version"]).unwrap_or_else(|| "-".into());
        let addrs = meta["addrs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "-".into());
        let node = text(&m["node"]).unwrap_or_else(|| "?".into());
        rows.push([node, state, incarnation, since, version, addrs]);
    }
    let mut widths = [0usize; 6];
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

fn health(status: &Value) -> String {
    let h = &status["health"];
    let yes_no = |v: &Value| {
        if v.as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        }
    };
    let mut out = String::new();
    let node = status["node"].as_str().unwrap_or("?");
    let cluster = status["cluster"].as_str().unwrap_or("?");
    let _ = writeln!(out, "node:        {node} (cluster {cluster})");
    let backend = h["backend"].as_str().or(status["backend"].as_str());
    let _ = writeln!(out, "backend:     {}", backend.unwrap_or("?"));
    let mut registered = yes_no(&h["registered"]).to_string();
    if let Some(i) = h["incarnation"].as_u64().filter(|i| *i != 0) {
        let _ = write!(registered, " (incarnation {i:x})");
    }
    let _ = writeln!(out, "registered:  {registered}");
    let freshness = if h["stale"].as_bool() == Some(false) {
        "fresh"
    } else {
        "stale (the last known view)"
    };
    let revision = status["revision"].as_u64().unwrap_or(0);
    let synced = if h["synced"].as_bool() == Some(true) {
        ""
    } else {
        ", not synced yet"
    };
    let _ = writeln!(out, "view:        {freshness}, revision {revision}{synced}");
    let last_ok = h["last_success"].as_u64().map_or("never".into(), utc);
    let _ = writeln!(out, "last success: {last_ok}");
    match h["last_error"].as_str() {
        Some(e) => {
            let at = h["last_error_at"]
                .as_u64()
                .map_or(String::new(), |t| format!(" at {}", utc(t)));
            let failures = h["consecutive_failures"].as_u64().unwrap_or(0);
            let _ = writeln!(out, "last error:  {e}{at} ({failures} failures in a row)");
        }
        None => {
            let _ = writeln!(out, "last error:  none");
        }
    }
    out
}

/// Milliseconds since the Unix epoch as `2024-11-24 21:17:03Z`.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (eras of 400 years, March-based
/// years, so the leap day comes last).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_emqx_line_matches_emqx() {
        let s =
            json!({"running_nodes": ["emqx1@127.0.0.1", "emqx2@127.0.0.1"], "stopped_nodes": []});
        assert_eq!(
            emqx_status_line(&s),
            "Cluster status: [{running_nodes,['emqx1@127.0.0.1','emqx2@127.0.0.1']}]"
        );
        let s = json!({"running_nodes": ["a@h"], "stopped_nodes": ["b@h"]});
        assert_eq!(
            emqx_status_line(&s),
            "Cluster status: [{running_nodes,['a@h']},{stopped_nodes,['b@h']}]"
        );
        assert_eq!(
            emqx_status_line(&json!({})),
            "Cluster status: [{running_nodes,[]}]"
        );
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_732_483_023_500), "2024-11-24 21:17:03Z");
    }

    #[test]
    fn the_table_lists_every_member() {
        let s = json!({
            "node": "a@h", "cluster": "emqxcl", "revision": 7,
            "running_nodes": ["a@h"], "stopped_nodes": [],
            "members": [{"node": "a@h", "status": "running", "incarnation": "ff", "since": 0,
                         "vanishing": false, "created": 0,
                         "meta": {"version": "0.1.0", "addrs": ["127.0.0.1:4370"]}}],
            "health": {"backend": "etcd", "registered": true, "stale": false, "synced": true,
                       "consecutive_failures": 0},
        });
        let text = render(&s);
        assert!(
            text.starts_with("Cluster status: [{running_nodes,['a@h']}]\n"),
            "{text}"
        );
        assert!(text.contains("a@h   running  ff"), "{text}");
        assert!(text.contains("127.0.0.1:4370"), "{text}");
        assert!(text.contains("backend:     etcd"), "{text}");
        assert!(text.contains("view:        fresh, revision 7"), "{text}");
        assert!(text.contains("last error:  none"), "{text}");
    }
}

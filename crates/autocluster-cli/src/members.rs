//! `autocluster members`: the members as JSON lines, or with `--watch` the membership events
//! as they happen, from the agent's `/members` and `/events`.

use std::io::Write;

use crate::cli::MembersArgs;
use crate::client::Agent;
use crate::{print_out, Failure};

/// Prints the members, or follows the events.
pub async fn run(args: &MembersArgs) -> Result<(), Failure> {
    let agent = Agent::locate(&args.agent)?;
    if args.watch {
        return watch(&agent).await;
    }
    let members = agent.get_json("/members").await?;
    let mut out = String::new();
    for member in members.as_array().into_iter().flatten() {
        out.push_str(&member.to_string());
        out.push('\n');
    }
    print_out(&out)
}

/// One event per line, each flushed, until the agent goes away (exit 1).
async fn watch(agent: &Agent) -> Result<(), Failure> {
    let mut events = agent.get("/events").await?;
    if events.status != 200 {
        let status = events.status;
        let body = events.text().await.unwrap_or_default();
        return Err(Failure::runtime(format!(
            "the agent on {} answered {status} to /events: {}",
            agent.addr,
            body.trim()
        )));
    }
    let gone =
        |why: String| Failure::runtime(format!("the agent on {} went away{why}", agent.addr));
    loop {
        match events.next_line().await {
            Ok(Some(line)) if line.trim().is_empty() => continue,
            Ok(Some(line)) => {
                let mut out = std::io::stdout().lock();
                // A closed stdout (`| head`) ends the watch quietly.
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return Ok(());
                }
            }
            Ok(None) => return Err(gone(String::new())),
            Err(e) => return Err(gone(format!(": {e}"))),
        }
    }
}

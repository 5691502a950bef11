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
    // Printed as the agent sent them, one object a line.
    let members: Vec<serde_json::Value> = agent.get_json("/members").await?;
    let mut out = String::new();
    for member in &members {
        out.push_str(&member.to_string());
        out.push('\n');
    }
    print_out(&out)
}

/// Every line of `/events`, each flushed, until the agent goes away (exit 1). The first is
/// `{"event":"subscribed",...}`: from there on no event is missed.
async fn watch(agent: &Agent) -> Result<(), Failure> {
    let mut events = agent.get("/events").await?;
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
            Ok(None) => {
                return Err(Failure::runtime(format!(
                    "the agent on {} went away",
                    agent.addr
                )))
            }
            Err(e) => return Err(agent.body_failure("/events", e)),
        }
    }
}

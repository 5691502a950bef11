//! What every harness does around its faults: restart an agent, and after a round's heal
//! take the truth and wait for the views to converge on it.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::agents::{follow_events, AgentProc};
use super::history::{HistoryWriter, Members, Record};

/// Starts `a` (through `wrapper`) once the registration of its last life ran out (`ttl` and
/// a second after it went down), waits until it is ready, and follows its events. Retries
/// when it exits at once (refused while an old registration still held its name).
pub async fn restart(
    a: &mut AgentProc,
    bin: &Path,
    wrapper: &[String],
    ttl: Duration,
    history: &HistoryWriter,
) -> io::Result<()> {
    for _attempt in 0..5 {
        if let Some(down) = a.down_at {
            let ok_at = down + ttl + Duration::from_secs(1);
            tokio::time::sleep(ok_at.saturating_duration_since(Instant::now())).await;
        }
        a.start(bin, wrapper)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if a.exited().is_some() {
                a.kill();
                break;
            }
            if tokio::task::block_in_place(|| a.ready()).is_some() {
                follow_events(&a.name, a.admin, history);
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "{} not ready 30 s after its start; log tail:\n{}",
                    a.name,
                    a.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Err(io::Error::other(format!(
        "{} exited at every start; log tail:\n{}",
        a.name,
        a.log_tail()
    )))
}

/// After a round's heal at `heal_ms`: a keep-alive period (an agent resumed at the heal
/// finds out whether its registration ran out), every agent ready with its own incarnation
/// (the truth, written), then waits until every view equals it, at most `2 ttl + 3 s`.
pub async fn truth(
    agents: &[AgentProc],
    views: &Mutex<HashMap<String, Members>>,
    history: &HistoryWriter,
    ttl: Duration,
    heal_ms: u64,
) -> io::Result<Members> {
    tokio::time::sleep(ttl / 3 + Duration::from_millis(500)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut truth = Members::new();
    for a in agents {
        loop {
            if let Some(inc) = tokio::task::block_in_place(|| a.ready()) {
                truth.insert(a.name.clone(), inc);
                break;
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "{} not ready 30 s after the heal; log tail:\n{}",
                    a.name,
                    a.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    history.write(Record::Truth {
        heal_ms,
        members: truth.clone(),
    });
    let until = Instant::now() + ttl * 2 + Duration::from_secs(3);
    while Instant::now() < until {
        let converged = {
            let views = views.lock().unwrap_or_else(|p| p.into_inner());
            agents.iter().all(|a| views.get(&a.name) == Some(&truth))
        };
        if converged {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(truth)
}

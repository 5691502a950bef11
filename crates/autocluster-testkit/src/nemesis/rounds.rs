//! What every harness does around its faults: restart an agent, and after a round's heal
//! take the truth and wait for the views to converge on it.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::agents::{follow_events, AgentProc, Polled};
use super::history::{HistoryWriter, Members, Record};

/// Starts `a` once the registration of its last life ran out (`ttl` and a second after it
/// went down), follows its events, and waits until it is ready or exits. One that exits (a
/// name still held: an old lease that a lost quorum kept alive) is started again later, up
/// to five times; one that runs but is not ready within 30 s (its backend is down) is left
/// running: the round's truth waits for it.
pub async fn restart(
    a: &mut AgentProc,
    bin: &Path,
    ttl: Duration,
    history: &HistoryWriter,
) -> io::Result<()> {
    for _attempt in 0..5 {
        if let Some(down) = a.down_at {
            let ok_at = down + ttl + Duration::from_secs(1);
            tokio::time::sleep(ok_at.saturating_duration_since(Instant::now())).await;
        }
        a.start(bin)?;
        tokio::task::block_in_place(|| follow_events(&a.name, a.admin, history));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if a.exited().is_some() {
                a.kill();
                break;
            }
            if tokio::task::block_in_place(|| a.ready()).is_some() || Instant::now() > deadline {
                return Ok(());
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
    agents: &mut [AgentProc],
    bin: &Path,
    views: &Mutex<HashMap<String, Members>>,
    history: &HistoryWriter,
    ttl: Duration,
    heal_ms: u64,
) -> io::Result<Members> {
    tokio::time::sleep(ttl / 3 + Duration::from_millis(500)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut truth = Members::new();
    for a in agents.iter_mut() {
        loop {
            if a.exited().is_some() {
                a.kill();
                restart(a, bin, ttl, history).await?;
            }
            if let Some(inc) = tokio::task::block_in_place(|| a.ready()) {
                truth.insert(a.name.clone(), inc);
                break;
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "{} not ready 60 s after the heal; log tail:\n{}",
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

/// Writes the harness's truth (every agent's state; whether etcd is free of faults) to the
/// history, and tells the poller whom it may ask: the agents that run and are not paused.
pub fn publish_state(
    history: &HistoryWriter,
    polled: &Mutex<Vec<Polled>>,
    agents: &[AgentProc],
    etcd_calm: bool,
) {
    history.write(Record::State {
        agents: agents.iter().map(|a| a.state.clone()).collect(),
        etcd_calm,
    });
    *polled.lock().unwrap_or_else(|p| p.into_inner()) = agents
        .iter()
        .map(|a| Polled {
            name: a.name.clone(),
            admin: a.admin,
            askable: a.state.live && !a.state.paused,
        })
        .collect();
}

//! The etcd nemesis: agents over a three-member etcd cluster, each agent through one proxy
//! per member, and rounds of overlapping faults drawn from the seed.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::agents::{poll, AgentProc, Polled};
use super::etcd_ops;
use super::faults::{Dice, Fault};
use super::history::{HistoryWriter, Members, Record};
use super::{Outcome, Settings};
use crate::fixtures::etcd_cluster::EtcdCluster;
use crate::fixtures::proxy::Proxy;

/// `delay_agent`: how long the agent's proxies hold each chunk, in either direction.
const DELAY_MIN: Duration = Duration::from_millis(50);
const DELAY_MAX: Duration = Duration::from_millis(800);

/// A fault in effect, and when it is healed.
struct Active {
    fault: Fault,
    agent: Option<usize>,
    members: Vec<usize>,
    heal_at: Instant,
}

struct EtcdRun {
    s: Settings,
    etcd: EtcdCluster,
    agents: Vec<AgentProc>,
    proxies: Vec<Vec<Proxy>>,
    history: HistoryWriter,
    dice: Dice,
    polled: Arc<Mutex<Vec<Polled>>>,
    views: Arc<Mutex<HashMap<String, Members>>>,
    active: Vec<Active>,
    junk: bool,
}

/// Runs the etcd nemesis as `s` says and checks its history.
pub async fn run(s: Settings) -> io::Result<Outcome> {
    std::fs::create_dir_all(&s.dir)?;
    let path = s.dir.join(format!("nemesis-etcd-{}.jsonl", s.seed));
    let history = HistoryWriter::create(&path)?;
    let etcd = EtcdCluster::start().await?;
    let mut proxies = Vec::new();
    let mut agents = Vec::new();
    let ttl = s.node_ttl.as_secs().max(1);
    for i in 0..s.agents {
        let mut mine = Vec::new();
        for m in 0..etcd.size() {
            mine.push(Proxy::start(etcd.addr(m)).await?);
        }
        let server: Vec<String> = mine.iter().map(|p| p.endpoint()).collect();
        let body = format!(
            "cluster.discovery = etcd\ncluster.etcd.server = {}\ncluster.etcd.prefix = emqxcl\n\
             cluster.etcd.node_ttl = {ttl}s\ncluster.call_timeout = 2s\n\
             cluster.backoff_min = 100ms\ncluster.backoff_max = 1s\n",
            server.join(",")
        );
        agents.push(AgentProc::new(
            &s.dir,
            &format!("n{}@127.0.0.1", i + 1),
            &body,
        ));
        proxies.push(mine);
    }
    let fresh = 3 * (s.node_ttl / 3).clamp(Duration::from_millis(500), Duration::from_secs(5));
    history.write(Record::Start {
        seed: s.seed,
        backend: "etcd".into(),
        agents: agents.iter().map(|a| a.name.clone()).collect(),
        node_ttl_ms: s.node_ttl.as_millis() as u64,
        grace_ms: s.node_ttl.as_millis() as u64,
        fresh_bound_ms: fresh.as_millis() as u64,
    });
    let mut run = EtcdRun {
        dice: Dice::new(s.seed),
        s,
        etcd,
        agents,
        proxies,
        history: history.clone(),
        polled: Arc::default(),
        views: Arc::default(),
        active: Vec::new(),
        junk: false,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let poller = poll(
        run.polled.clone(),
        history.clone(),
        run.views.clone(),
        Duration::from_millis(200),
        stop.clone(),
    );
    let result = run.all_rounds().await;
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || poller.join()).await;
    history.write(Record::End);
    history.flush()?;
    result?;
    let entries = super::history::read(&path)?;
    Ok(Outcome {
        report: super::checker::check(&entries),
        history: path,
    })
}

impl EtcdRun {
    async fn all_rounds(&mut self) -> io::Result<()> {
        for i in 0..self.agents.len() {
            self.restart_agent(i).await?;
        }
        self.state();
        let end = Instant::now() + self.s.duration;
        while Instant::now() < end {
            self.round().await?;
        }
        Ok(())
    }

    /// Writes the harness's truth and tells the poller whom to ask.
    fn state(&self) {
        let calm = !self.active.iter().any(|a| a.fault.scope() == "etcd");
        super::rounds::publish_state(&self.history, &self.polled, &self.agents, calm);
    }

    async fn round(&mut self) -> io::Result<()> {
        let end = Instant::now() + self.s.round;
        while Instant::now() < end {
            let pause = self
                .dice
                .duration(Duration::from_millis(200), Duration::from_millis(1500));
            tokio::time::sleep(pause).await;
            let now = Instant::now();
            let (mut due, rest) = std::mem::take(&mut self.active)
                .into_iter()
                .partition(|a| a.heal_at <= now);
            self.active = rest;
            // The servers first: an agent restarted without a quorum could not register.
            due.sort_by_key(|a: &Active| a.fault.scope() != "etcd");
            for a in due {
                self.heal(a).await?;
            }
            if self.dice.chance(0.6) {
                let kind = self.dice.fault(&Fault::ETCD);
                self.inject(kind).await?;
            }
        }
        let mut all = std::mem::take(&mut self.active);
        all.sort_by_key(|a| a.fault.scope() != "etcd");
        for a in all {
            self.heal(a).await?;
        }
        if self.junk {
            etcd_ops::clean(&self.etcd).await?;
            self.junk = false;
        }
        let heal_ms = self.history.write(Record::Heal {
            what: "all".into(),
            scope: "all".into(),
            target: None,
        });
        self.state();
        self.checkpoint(heal_ms).await
    }

    fn fault_line(&self, fault: Fault, target: Option<String>) {
        self.history.write(Record::Fault {
            fault: fault.name().into(),
            scope: fault.scope().into(),
            target,
        });
    }

    fn heal_line(&self, what: &str, scope: &str, target: Option<String>) {
        self.history.write(Record::Heal {
            what: what.into(),
            scope: scope.into(),
            target,
        });
    }

    /// Injects `kind` if nothing in effect conflicts with it.
    async fn inject(&mut self, kind: Fault) -> io::Result<()> {
        let etcd_busy = self.active.iter().any(|a| a.fault.scope() == "etcd");
        let heal_at = Instant::now()
            + self
                .dice
                .duration(Duration::from_millis(500), self.s.node_ttl * 2);
        match kind.scope() {
            "agent" => {
                let i = self.dice.index(self.agents.len());
                if self.active.iter().any(|a| a.agent == Some(i)) {
                    return Ok(());
                }
                self.fault_line(kind, Some(self.agents[i].name.clone()));
                let a = &mut self.agents[i];
                match kind {
                    Fault::KillAgent => a.kill(),
                    Fault::PauseAgent => a.pause(),
                    Fault::LeaveAgent => {
                        tokio::task::block_in_place(|| a.leave(Duration::from_secs(15)));
                    }
                    Fault::CutAgent => {
                        self.proxies[i].iter().for_each(Proxy::cut);
                        a.state.connected = false;
                    }
                    // Slow, not cut: the agent stays connected.
                    Fault::DelayAgent => self.proxies[i]
                        .iter()
                        .for_each(|p| p.delay(DELAY_MIN, DELAY_MAX)),
                    _ => {
                        self.proxies[i].iter().for_each(Proxy::blackhole);
                        a.state.connected = false;
                    }
                }
                self.active.push(Active {
                    fault: kind,
                    agent: Some(i),
                    members: vec![],
                    heal_at,
                });
            }
            "etcd" if !etcd_busy => self.inject_etcd(kind, heal_at).await?,
            "data" if !etcd_busy => {
                self.fault_line(kind, None);
                match kind {
                    Fault::Compact => etcd_ops::compact(&self.etcd).await?,
                    Fault::Garbage => etcd_ops::garbage(&self.etcd).await?,
                    _ => etcd_ops::large_values(&self.etcd).await?,
                }
                self.junk |= kind != Fault::Compact;
            }
            _ => return Ok(()),
        }
        self.state();
        Ok(())
    }

    async fn inject_etcd(&mut self, kind: Fault, heal_at: Instant) -> io::Result<()> {
        let n = self.etcd.size();
        let members = match kind {
            Fault::KillMember => vec![self.dice.index(n)],
            Fault::KillLeader => vec![self.etcd.wait_leader(Duration::from_secs(30)).await?],
            Fault::LoseQuorum => {
                let keep = self.dice.index(n);
                (0..n).filter(|&m| m != keep).collect()
            }
            Fault::RestartEtcd => {
                self.fault_line(kind, None);
                let all: Vec<usize> = (0..n).collect();
                self.etcd.restart(&all).await?;
                self.heal_line("restart_etcd", "etcd", None);
                return Ok(());
            }
            _ => {
                self.fault_line(kind, None);
                self.etcd.wipe().await?;
                self.heal_line("wipe_etcd", "etcd", None);
                return Ok(());
            }
        };
        let names: Vec<&str> = members.iter().map(|&m| self.etcd.name(m)).collect();
        self.fault_line(kind, Some(names.join(",")));
        for &m in &members {
            self.etcd.kill(m);
        }
        self.active.push(Active {
            fault: kind,
            agent: None,
            members,
            heal_at,
        });
        Ok(())
    }

    async fn heal(&mut self, a: Active) -> io::Result<()> {
        if let Some(i) = a.agent {
            let name = Some(self.agents[i].name.clone());
            match a.fault {
                Fault::KillAgent | Fault::LeaveAgent => {
                    self.restart_agent(i).await?;
                    self.heal_line("restart_agent", "agent", name);
                }
                Fault::PauseAgent => {
                    self.agents[i].resume();
                    self.heal_line("resume_agent", "agent", name);
                }
                Fault::DelayAgent => {
                    self.proxies[i]
                        .iter()
                        .for_each(|p| p.delay(Duration::ZERO, Duration::ZERO));
                    self.heal_line("undelay_agent", "agent", name);
                }
                _ => {
                    self.proxies[i].iter().for_each(Proxy::heal);
                    self.agents[i].state.connected = true;
                    self.heal_line("reconnect_agent", "agent", name);
                }
            }
        } else {
            self.etcd.restart(&a.members).await?;
            self.etcd.wait_leader(Duration::from_secs(30)).await?;
            let names: Vec<&str> = a.members.iter().map(|&m| self.etcd.name(m)).collect();
            self.heal_line("restart_members", "etcd", Some(names.join(",")));
        }
        self.state();
        Ok(())
    }

    async fn restart_agent(&mut self, i: usize) -> io::Result<()> {
        let ttl = self.s.node_ttl;
        super::rounds::restart(&mut self.agents[i], &self.s.bin, ttl, &self.history).await
    }

    /// After a round's heal: the truth, the views' convergence awaited, the keys read.
    async fn checkpoint(&mut self, heal_ms: u64) -> io::Result<()> {
        let (ttl, bin) = (self.s.node_ttl, &self.s.bin);
        super::rounds::truth(
            &mut self.agents,
            bin,
            &self.views,
            &self.history,
            ttl,
            heal_ms,
        )
        .await?;
        let keys = etcd_ops::node_keys(&self.etcd).await?;
        self.history.write(Record::EtcdKeys { keys });
        Ok(())
    }
}

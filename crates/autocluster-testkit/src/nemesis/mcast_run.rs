//! The multicast nemesis: agents in network namespaces on one bridge, faults as nftables
//! rules (loss, isolation, a split) and on the processes (kill -9, SIGSTOP, clean leave).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::agents::{poll, AgentProc, Polled};
use super::faults::{Dice, Fault};
use super::history::{HistoryWriter, Members, Record};
use super::netns::Net;
use super::{Outcome, Settings};

/// The multicast UDP port.
const PORT: u16 = 4369;

struct Active {
    fault: Fault,
    agent: Option<usize>,
    heal_at: Instant,
}

struct McastRun {
    s: Settings,
    net: Net,
    agents: Vec<AgentProc>,
    history: HistoryWriter,
    dice: Dice,
    polled: Arc<Mutex<Vec<Polled>>>,
    views: Arc<Mutex<HashMap<String, Members>>>,
    active: Vec<Active>,
}

/// Runs the multicast nemesis as `s` says (`node_ttl` is `cluster.mcast.member_ttl`) and
/// checks its history.
pub async fn run(s: Settings) -> io::Result<Outcome> {
    std::fs::create_dir_all(&s.dir)?;
    let path = s.dir.join(format!("nemesis-mcast-{}.jsonl", s.seed));
    let history = HistoryWriter::create(&path)?;
    let net = Net::create(s.agents, PORT)?;
    let ttl_ms = s.node_ttl.as_millis() as u64;
    let heartbeat = (ttl_ms / 6).max(100);
    let cookie = format!("nemesis-{}-{}", std::process::id(), s.seed);
    let mut agents = Vec::new();
    for k in 1..=s.agents {
        let addr = net.addr(k);
        let body = format!(
            "node.cookie = {cookie}\ncluster.discovery = mcast\ncluster.mcast.addr = 239.192.77.1\n\
             cluster.mcast.ports = {PORT}\ncluster.mcast.iface = {addr}\ncluster.mcast.ttl = 1\n\
             cluster.mcast.loop = off\ncluster.mcast.heartbeat = {heartbeat}ms\n\
             cluster.mcast.member_ttl = {ttl_ms}ms\n"
        );
        let admin = SocketAddr::from((addr, 8070));
        let mut agent = AgentProc::with_admin(&s.dir, &format!("n{k}@{addr}"), admin, &body);
        agent.wrapper = net.wrapper(k);
        agents.push(agent);
    }
    history.write(Record::Start {
        seed: s.seed,
        backend: "mcast".into(),
        agents: agents.iter().map(|a| a.name.clone()).collect(),
        node_ttl_ms: ttl_ms,
        grace_ms: ttl_ms,
        fresh_bound_ms: 0,
    });
    let mut run = McastRun {
        dice: Dice::new(s.seed),
        s,
        net,
        agents,
        history: history.clone(),
        polled: Arc::default(),
        views: Arc::default(),
        active: Vec::new(),
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
    drop(run);
    result?;
    let entries = super::history::read(&path)?;
    Ok(Outcome {
        report: super::checker::check(&entries),
        history: path,
    })
}

impl McastRun {
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

    async fn restart_agent(&mut self, i: usize) -> io::Result<()> {
        let (ttl, bin) = (self.s.node_ttl, &self.s.bin);
        super::rounds::restart(&mut self.agents[i], bin, ttl, &self.history).await
    }

    fn state(&self) {
        super::rounds::publish_state(&self.history, &self.polled, &self.agents, true);
    }

    async fn round(&mut self) -> io::Result<()> {
        let end = Instant::now() + self.s.round;
        while Instant::now() < end {
            let pause = self
                .dice
                .duration(Duration::from_millis(200), Duration::from_millis(1500));
            tokio::time::sleep(pause).await;
            let now = Instant::now();
            let due: Vec<usize> = (0..self.active.len())
                .filter(|&i| self.active[i].heal_at <= now)
                .collect();
            for i in due.into_iter().rev() {
                let a = self.active.remove(i);
                self.heal(a).await?;
            }
            if self.dice.chance(0.6) {
                let kind = self.dice.fault(&Fault::MCAST);
                self.inject(kind)?;
            }
        }
        while let Some(a) = self.active.pop() {
            self.heal(a).await?;
        }
        let heal_ms = self.history.write(Record::Heal {
            what: "all".into(),
            scope: "all".into(),
            target: None,
        });
        self.state();
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
        Ok(())
    }

    fn inject(&mut self, kind: Fault) -> io::Result<()> {
        let heal_at = Instant::now()
            + self
                .dice
                .duration(Duration::from_millis(500), self.s.node_ttl * 2);
        if kind == Fault::Split {
            if self.active.iter().any(|a| a.fault == Fault::Split) {
                return Ok(());
            }
            let n = self.agents.len();
            let cut = 1 + self.dice.index(n - 1);
            let (a, b): (Vec<usize>, Vec<usize>) = (1..=n).partition(|&k| k <= cut);
            for &k in &a {
                self.net.ignore(k, &b)?;
            }
            for &k in &b {
                self.net.ignore(k, &a)?;
            }
            self.fault_line(kind, Some(format!("{a:?}|{b:?}")));
            self.agents
                .iter_mut()
                .for_each(|x| x.state.connected = false);
            self.active.push(Active {
                fault: kind,
                agent: None,
                heal_at,
            });
            self.state();
            return Ok(());
        }
        let i = self.dice.index(self.agents.len());
        let split = self.active.iter().any(|a| a.fault == Fault::Split);
        let net_fault = matches!(kind, Fault::IsolateAgent | Fault::LossAgent);
        if self.active.iter().any(|a| a.agent == Some(i)) || (split && net_fault) {
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
            Fault::IsolateAgent => {
                self.net.isolate(i + 1)?;
                a.state.connected = false;
            }
            _ => {
                let percent = 5 + self.dice.index(16) as u32;
                self.net.loss(i + 1, percent)?;
            }
        }
        self.active.push(Active {
            fault: kind,
            agent: Some(i),
            heal_at,
        });
        self.state();
        Ok(())
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

    async fn heal(&mut self, a: Active) -> io::Result<()> {
        match (a.fault, a.agent) {
            (Fault::Split, _) => {
                for k in 1..=self.agents.len() {
                    let i = k - 1;
                    let own = self
                        .active
                        .iter()
                        .any(|x| x.agent == Some(i) && x.fault == Fault::IsolateAgent);
                    if !own {
                        self.net.heal(k)?;
                        self.agents[i].state.connected = true;
                    }
                }
                self.heal_line("join_split", "network", None);
            }
            (Fault::KillAgent | Fault::LeaveAgent, Some(i)) => {
                self.restart_agent(i).await?;
                self.heal_line("restart_agent", "agent", Some(self.agents[i].name.clone()));
            }
            (Fault::PauseAgent, Some(i)) => {
                self.agents[i].resume();
                self.heal_line("resume_agent", "agent", Some(self.agents[i].name.clone()));
            }
            (_, Some(i)) => {
                self.net.heal(i + 1)?;
                let split = self.active.iter().any(|x| x.fault == Fault::Split);
                self.agents[i].state.connected = !split;
                self.heal_line(
                    "reconnect_agent",
                    "agent",
                    Some(self.agents[i].name.clone()),
                );
            }
            _ => {}
        }
        self.state();
        Ok(())
    }
}

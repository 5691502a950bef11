//! The faults a nemesis injects, and the seeded draw of which one comes next.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Fault {
    /// SIGKILL an agent; restarted once its lease ran out.
    KillAgent,
    /// SIGSTOP an agent, SIGCONT later (sometimes past `node_ttl`).
    PauseAgent,
    /// SIGTERM an agent (a clean leave); it rejoins later.
    LeaveAgent,
    /// Close every connection of an agent to the backend, and refuse new ones.
    CutAgent,
    /// Stop forwarding an agent's traffic without closing anything.
    BlackholeAgent,
    /// Hold every chunk of an agent's traffic to etcd for 50 to 800 ms, in order.
    DelayAgent,
    /// SIGKILL one etcd member; restarted with its data later.
    KillMember,
    /// SIGKILL the etcd leader; restarted with its data later.
    KillLeader,
    /// SIGKILL two of three etcd members; restarted together later.
    LoseQuorum,
    /// Every etcd member killed and started again with its data.
    RestartEtcd,
    /// Every etcd member killed, its data deleted, started empty.
    WipeEtcd,
    /// Compaction at the current revision.
    Compact,
    /// Keys under the node prefix that are not registrations (bad names, bad JSON).
    Garbage,
    /// Values of 100 KB under the node prefix.
    LargeValues,
    /// Multicast: every packet an agent sends or receives dropped.
    IsolateAgent,
    /// Multicast: 5 to 20 % of the packets an agent receives dropped at random.
    LossAgent,
    /// Multicast: the agents split in two groups that do not hear each other.
    Split,
}

impl Fault {
    /// Every kind, for the etcd harness.
    pub const ETCD: [Fault; 14] = [
        Fault::KillAgent,
        Fault::PauseAgent,
        Fault::LeaveAgent,
        Fault::CutAgent,
        Fault::BlackholeAgent,
        Fault::DelayAgent,
        Fault::KillMember,
        Fault::KillLeader,
        Fault::LoseQuorum,
        Fault::RestartEtcd,
        Fault::WipeEtcd,
        Fault::Compact,
        Fault::Garbage,
        Fault::LargeValues,
    ];

    /// Every kind for the multicast harness.
    pub const MCAST: [Fault; 6] = [
        Fault::KillAgent,
        Fault::PauseAgent,
        Fault::LeaveAgent,
        Fault::IsolateAgent,
        Fault::LossAgent,
        Fault::Split,
    ];

    /// Its name in the history (`kill_agent`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillAgent => "kill_agent",
            Fault::PauseAgent => "pause_agent",
            Fault::LeaveAgent => "leave_agent",
            Fault::CutAgent => "cut_agent",
            Fault::BlackholeAgent => "blackhole_agent",
            Fault::DelayAgent => "delay_agent",
            Fault::KillMember => "kill_member",
            Fault::KillLeader => "kill_leader",
            Fault::LoseQuorum => "lose_quorum",
            Fault::RestartEtcd => "restart_etcd",
            Fault::WipeEtcd => "wipe_etcd",
            Fault::Compact => "compact",
            Fault::Garbage => "garbage",
            Fault::LargeValues => "large_values",
            Fault::IsolateAgent => "isolate_agent",
            Fault::LossAgent => "loss_agent",
            Fault::Split => "split",
        }
    }

    /// `agent`, `etcd` or `data`.
    pub fn scope(self) -> &'static str {
        match self {
            Fault::KillAgent
            | Fault::PauseAgent
            | Fault::LeaveAgent
            | Fault::CutAgent
            | Fault::BlackholeAgent
            | Fault::DelayAgent
            | Fault::IsolateAgent
            | Fault::LossAgent => "agent",
            Fault::Split => "network",
            Fault::Compact | Fault::Garbage | Fault::LargeValues => "data",
            _ => "etcd",
        }
    }

    /// How often it is drawn, relative to the others.
    fn weight(self) -> u32 {
        match self {
            Fault::KillAgent | Fault::PauseAgent | Fault::CutAgent | Fault::BlackholeAgent => 4,
            Fault::LeaveAgent | Fault::DelayAgent | Fault::IsolateAgent | Fault::LossAgent => 3,
            Fault::Split => 2,
            Fault::KillMember | Fault::KillLeader => 2,
            Fault::WipeEtcd | Fault::RestartEtcd | Fault::LoseQuorum => 1,
            Fault::Compact | Fault::Garbage | Fault::LargeValues => 2,
        }
    }
}

/// The seeded source of every random choice of a run.
pub struct Dice {
    rng: StdRng,
}

impl Dice {
    /// From `seed`: the same seed draws the same choices (the timing of real processes
    /// still differs from run to run).
    pub fn new(seed: u64) -> Dice {
        Dice {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A fault among `kinds`, by weight.
    pub fn fault(&mut self, kinds: &[Fault]) -> Fault {
        let total: u32 = kinds.iter().map(|f| f.weight()).sum();
        let mut pick = self.rng.random_range(0..total);
        for f in kinds {
            if pick < f.weight() {
                return *f;
            }
            pick -= f.weight();
        }
        kinds[0]
    }

    /// An index below `n`.
    pub fn index(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    /// A duration in `min..max`.
    pub fn duration(&mut self, min: Duration, max: Duration) -> Duration {
        let ms = self
            .rng
            .random_range(min.as_millis() as u64..=max.as_millis() as u64);
        Duration::from_millis(ms)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }
}

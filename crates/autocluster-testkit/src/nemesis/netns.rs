//! Network namespaces for the multicast nemesis (Linux, root): one namespace per agent, each
//! with a veth on one bridge in a hub namespace, and a veth from the harness's namespace to
//! the bridge so it reaches the agents' admin endpoints. Faults are nftables rules on the
//! multicast UDP port inside an agent's namespace: loss (random drop), isolation, and a
//! split of the agents in two. Everything is deleted on drop.
//!
//! `tc netem` would add delay; its qdisc is missing from kernels without `sch_netem` (as on
//! the machine these tests were written on), so this module offers no delay.

use std::io;
use std::net::Ipv4Addr;
use std::process::Command;

/// The namespaces of one run.
pub struct Net {
    tag: String,
    /// The second octet of the run's subnet, `10.<net>.0.0/24`.
    net: u8,
    agents: usize,
    port: u16,
}

fn run(args: &[&str]) -> io::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Net {
    /// Whether this process can make namespaces and nftables rules (root, `ip`, `nft`).
    pub fn available() -> bool {
        let ok = |c: &str| {
            Command::new(c)
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        ok("ip")
            && ok("nft")
            && Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|o| o.stdout == b"0\n")
    }

    /// Makes the hub, `agents` namespaces and the harness's link; `port` is the multicast
    /// UDP port the faults act on.
    pub fn create(agents: usize, port: u16) -> io::Result<Net> {
        let pid = std::process::id();
        let net = Net {
            tag: format!("nm{}", pid % 100_000),
            net: (20 + pid % 200) as u8,
            agents,
            port,
        };
        let hub = net.hub();
        run(&["ip", "netns", "add", &hub])?;
        run(&[
            "ip",
            "-n",
            &hub,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        run(&["ip", "-n", &hub, "link", "set", "br0", "up"])?;
        for k in 1..=agents {
            let ns = net.ns(k);
            let port = format!("e{k}");
            run(&["ip", "netns", "add", &ns])?;
            run(&[
                "ip", "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            run(&[
                "ip", "-n", &hub, "link", "set", &port, "master", "br0", "up",
            ])?;
            let addr = format!("{}/24", net.addr(k));
            run(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            run(&[
                "ip",
                "-n",
                &ns,
                "route",
                "add",
                "224.0.0.0/4",
                "dev",
                "eth0",
            ])?;
            net.nft(k, "add table inet nem")?;
            net.nft(
                k,
                "add chain inet nem in { type filter hook input priority 0; }",
            )?;
            net.nft(
                k,
                "add chain inet nem out { type filter hook output priority 0; }",
            )?;
        }
        let root = format!("{}r", net.tag);
        run(&[
            "ip", "link", "add", &root, "type", "veth", "peer", "name", "up0", "netns", &hub,
        ])?;
        run(&[
            "ip", "-n", &hub, "link", "set", "up0", "master", "br0", "up",
        ])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("10.{}.0.254/24", net.net),
            "dev",
            &root,
        ])?;
        run(&["ip", "link", "set", &root, "up"])?;
        Ok(net)
    }

    fn hub(&self) -> String {
        format!("{}h", self.tag)
    }

    /// The namespace of agent `k` (1-based).
    pub fn ns(&self, k: usize) -> String {
        format!("{}a{k}", self.tag)
    }

    /// The address of agent `k` (1-based).
    pub fn addr(&self, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, 0, k as u8)
    }

    /// `ip netns exec <ns of k>`: the wrapper that runs a program in agent `k`'s namespace.
    pub fn wrapper(&self, k: usize) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.ns(k)]
    }

    fn nft(&self, k: usize, rule: &str) -> io::Result<()> {
        let ns = self.ns(k);
        let mut args = vec!["ip", "netns", "exec", &ns, "nft"];
        args.extend(rule.split(' '));
        run(&args)
    }

    /// Drops `percent` % of the multicast packets agent `k` receives.
    pub fn loss(&self, k: usize, percent: u32) -> io::Result<()> {
        self.nft(
            k,
            &format!(
                "add rule inet nem in udp dport {} numgen random mod 100 < {percent} drop",
                self.port
            ),
        )
    }

    /// Drops every multicast packet agent `k` sends or receives.
    pub fn isolate(&self, k: usize) -> io::Result<()> {
        self.nft(
            k,
            &format!("add rule inet nem in udp dport {} drop", self.port),
        )?;
        self.nft(
            k,
            &format!("add rule inet nem out udp dport {} drop", self.port),
        )
    }

    /// Agent `k` drops the multicast packets of the agents `others` (1-based).
    pub fn ignore(&self, k: usize, others: &[usize]) -> io::Result<()> {
        let addrs: Vec<String> = others.iter().map(|&o| self.addr(o).to_string()).collect();
        self.nft(
            k,
            &format!(
                "add rule inet nem in ip saddr {{ {} }} udp dport {} drop",
                addrs.join(", "),
                self.port
            ),
        )
    }

    /// Removes every rule of agent `k`.
    pub fn heal(&self, k: usize) -> io::Result<()> {
        self.nft(k, "flush table inet nem")
    }

    /// Removes every rule of every agent.
    pub fn heal_all(&self) -> io::Result<()> {
        (1..=self.agents).try_for_each(|k| self.heal(k))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for k in 1..=self.agents {
            let _ = run(&["ip", "netns", "del", &self.ns(k)]);
        }
        let _ = run(&["ip", "netns", "del", &self.hub()]);
        let _ = run(&["ip", "link", "del", &format!("{}r", self.tag)]);
    }
}

//! The command line: every command and flag, as clap derives them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Cluster membership for distributed services: nodes find each other through etcd, static
/// seeds, DNS or UDP multicast, chosen by `cluster.discovery` in an EMQX-style `.conf` file.
#[derive(Debug, Parser)]
#[command(name = "autocluster", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file and print the resolved settings (secrets hidden).
    ///
    /// Exits 0 when the configuration is usable, 2 (with every problem located as
    /// FILE:LINE) when it is not.
    Check(CheckArgs),
    /// Run a node: register it, keep the membership view, serve the admin endpoint.
    ///
    /// Runs until SIGHUP, SIGINT, SIGTERM or SIGQUIT, then leaves the cluster (peers see it
    /// go at once) and exits 0. A backend that is down is retried, not fatal. Exits 2 on a
    /// configuration error, 1 when the admin endpoint cannot listen, 3 when it stopped on its
    /// own after a failure (an engine task that panicked, say), having left the cluster.
    Agent(AgentArgs),
    /// Print the cluster status as a running agent sees it.
    ///
    /// First EMQX's one-line form, `Cluster status: [{running_nodes,[...]}]`, then a table
    /// of the members, the health of the agent's backend, and the agent's warnings (a
    /// `warning:` line each). Exits 1 if no agent answers.
    Status(StatusArgs),
    /// Print the members as one JSON object per line, or follow the membership events.
    Members(MembersArgs),
    /// Watch a three-node cluster on this machine find each other, lose one to a crash and
    /// one to a clean leave, with no outside service.
    ///
    /// Three nodes run in this process, over UDP multicast on loopback (a random group, port,
    /// cookie and cluster name, so it never mixes with a real cluster), or over an etcd with
    /// `--discovery etcd`. Prints the story with timestamps and exits 0 after about 10 s; exits
    /// 1 when the nodes cannot see each other (multicast on loopback does not work here, or
    /// etcd does not answer).
    Demo(DemoArgs),
    /// Print a shell completion script to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout.
    Man,
}

/// `autocluster check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The configuration file (`.conf`, `.toml`, `.yaml`); `AUTOCLUSTER_*` variables override it.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: PathBuf,
}

/// `autocluster agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The configuration file (`.conf`, `.toml`, `.yaml`); `AUTOCLUSTER_*` variables override it.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: PathBuf,
    /// Where the admin endpoint listens, overriding `node.admin_listen` (default
    /// 127.0.0.1:8070). Port 0 picks a free port, logged at start.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// The log format on stderr. The level comes from `RUST_LOG` (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
    /// Run CMD (through `sh -c`) on every membership event, one at a time in event order. The
    /// event is in AUTOCLUSTER_EVENT (joined, left, updated), AUTOCLUSTER_NODE,
    /// AUTOCLUSTER_INCARNATION, AUTOCLUSTER_REASON (left), AUTOCLUSTER_CLUSTER,
    /// AUTOCLUSTER_SELF, and the member's AUTOCLUSTER_MEMBER, AUTOCLUSTER_LABELS and
    /// AUTOCLUSTER_ENDPOINTS (JSON); the running members, one node name a line, on standard
    /// input.
    #[arg(long, value_name = "CMD")]
    pub on_change: Option<String>,
    /// Keep PATH listing the running members, one node name a line, sorted; rewritten
    /// atomically whenever the running set changes, and once at start.
    #[arg(long, value_name = "PATH")]
    pub members_file: Option<PathBuf>,
    /// The form of `--members-file`: `lines` (one node name a line) or `json` (an array of
    /// the running members as `/members` shows them, with their labels and endpoints;
    /// rewritten also when a member's metadata changes).
    #[arg(long, value_enum, default_value_t = MembersFormat::Lines, value_name = "FORMAT")]
    pub members_file_format: MembersFormat,
    /// How long an `--on-change` command may run before it is killed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub hook_timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    match autocluster::plugin::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("expected a duration above zero".into()),
        other => other,
    }
}

/// `autocluster demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How the demo nodes find each other: UDP multicast on loopback (no outside service), or
    /// an etcd (`--etcd`).
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub discovery: Option<DemoBackend>,
    /// The etcd to use with `--discovery etcd` (implies it); default http://127.0.0.1:2379.
    #[arg(long, value_name = "URL")]
    pub etcd: Option<String>,
}

/// The backends the demo can run over.
/// The form of `--members-file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MembersFormat {
    /// One node name a line, sorted.
    Lines,
    /// A JSON array of the running members, with their metadata.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoBackend {
    /// UDP multicast on loopback.
    Mcast,
    /// An etcd server.
    Etcd,
}

/// How the agent logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where to find a running agent: its configuration file, or its address.
#[derive(Debug, Args)]
pub struct AgentAddr {
    /// The agent's configuration file; only `node.admin_listen` is read from it.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        required_unless_present = "admin"
    )]
    pub config: Option<PathBuf>,
    /// The agent's admin endpoint, instead of reading `node.admin_listen` from the file.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
}

/// `autocluster status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Where the agent is.
    #[command(flatten)]
    pub agent: AgentAddr,
    /// Print the agent's `/status` JSON object instead of the text form.
    #[arg(long)]
    pub json: bool,
}

/// `autocluster members`.
#[derive(Debug, Args)]
pub struct MembersArgs {
    /// Where the agent is.
    #[command(flatten)]
    pub agent: AgentAddr,
    /// Follow the membership: print one JSON event per line (`joined`, `left`, `updated`) as
    /// they happen, until interrupted or until the agent goes away (exit 1).
    #[arg(long)]
    pub watch: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn status_needs_a_file_or_an_address() {
        assert!(Cli::try_parse_from(["autocluster", "status"]).is_err());
        assert!(Cli::try_parse_from(["autocluster", "status", "-c", "n.conf"]).is_ok());
        assert!(Cli::try_parse_from(["autocluster", "status", "--admin", "127.0.0.1:1"]).is_ok());
    }

    #[test]
    fn hook_timeout_is_a_duration_above_zero() {
        let parse = |t: &str| {
            Cli::try_parse_from(["autocluster", "agent", "-c", "n.conf", "--hook-timeout", t])
        };
        match parse("1500ms").unwrap().command {
            Command::Agent(a) => assert_eq!(a.hook_timeout, Duration::from_millis(1500)),
            other => panic!("{other:?}"),
        }
        assert!(parse("0s").is_err());
        assert!(parse("10").is_err());
    }
}

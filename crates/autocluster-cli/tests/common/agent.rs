//! A running `autocluster agent -c FILE`, asked through its admin endpoint and the CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{http_get, run, text, wait_for, wrapped, Proc, WAIT};

/// How to start an agent beyond its file.
#[derive(Default)]
pub struct Launch<'a> {
    /// Flags after `agent -c FILE`.
    pub flags: &'a [&'a str],
    /// Environment variables set for it.
    pub env: &'a [(&'a str, &'a str)],
    /// A program (with its arguments) that runs the agent, such as `prlimit --nofile=N:N`.
    pub wrapper: &'a [&'a str],
    /// Its stderr on a pipe the test holds ([`Agent::take_stderr`]) instead of a log file.
    pub stderr_pipe: bool,
}

/// An agent process, its stderr in `<conf stem>.<n>.log` beside its file; killed when
/// dropped.
pub struct Agent {
    pub proc: Proc,
    /// `node.name` of its file, for diagnostics.
    pub name: String,
    pub conf: PathBuf,
    /// `--admin` when given, else `node.admin_listen` of the file.
    pub admin: Option<SocketAddr>,
    pub log: PathBuf,
}

/// The value of `key = value` in a `.conf` body.
fn conf_value<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// The address an agent's log says its admin endpoint listens on.
fn bound_admin(log: &str) -> Option<SocketAddr> {
    let (_, rest) = log.split_once("admin endpoint listening on http://")?;
    rest.split_whitespace().next()?.parse().ok()
}

impl Agent {
    /// `autocluster agent -c conf`.
    pub fn start(conf: &Path) -> Agent {
        Agent::start_with(conf, &[], &[])
    }

    /// `autocluster agent -c conf FLAGS...` with `env` set for it.
    pub fn start_with(conf: &Path, flags: &[&str], env: &[(&str, &str)]) -> Agent {
        Agent::launch(
            conf,
            Launch {
                flags,
                env,
                ..Launch::default()
            },
        )
    }

    /// `[WRAPPER...] autocluster agent -c conf FLAGS...` as `launch` says.
    pub fn launch(conf: &Path, launch: Launch) -> Agent {
        let body = std::fs::read_to_string(conf).unwrap();
        let flags = launch.flags;
        let flag_admin = flags
            .iter()
            .position(|f| *f == "--admin")
            .and_then(|i| flags.get(i + 1).copied());
        let admin = flag_admin
            .or_else(|| conf_value(&body, "node.admin_listen"))
            .map(|a| a.parse().expect("an admin address"));
        let name = conf_value(&body, "node.name").unwrap_or("?").to_string();
        let log = (0..)
            .map(|n| conf.with_extension(format!("{n}.log")))
            .find(|log| !log.exists())
            .unwrap();
        let mut args = vec!["agent", "-c", conf.to_str().unwrap()];
        args.extend_from_slice(flags);
        let stderr = if launch.stderr_pipe {
            Stdio::piped()
        } else {
            std::fs::File::create(&log).unwrap().into()
        };
        let child = wrapped(launch.wrapper, &args)
            .envs(launch.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Agent {
            proc: Proc(child),
            name,
            conf: conf.to_path_buf(),
            admin,
            log,
        }
    }

    /// Its stderr, when it was started with [`Launch::stderr_pipe`].
    pub fn take_stderr(&mut self) -> ChildStderr {
        self.proc
            .0
            .stderr
            .take()
            .expect("an agent started with its stderr on a pipe")
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its stderr under a line naming it, for a failure message.
    pub fn diag(&self) -> String {
        format!(
            "--- log of {} ({}):\n{}",
            self.name,
            self.conf.display(),
            self.log()
        )
    }

    pub fn conf(&self) -> &str {
        self.conf.to_str().unwrap()
    }

    /// Where to reach its admin endpoint. An address with port 0 (the agent binds a port the
    /// system chooses, so no other process can take it between a test's pick and the agent's
    /// bind) is read from the agent's log line `admin endpoint listening on http://ADDR`,
    /// waiting for it at most [`WAIT`]; an unspecified address (`0.0.0.0`) is reached on
    /// loopback.
    pub fn admin(&self) -> SocketAddr {
        let given = self
            .admin
            .expect("the agent's admin address (--admin or node.admin_listen)");
        let bound = if given.port() != 0 {
            given
        } else {
            wait_for(
                &format!("{} to log its admin address", self.name),
                || bound_admin(&self.log()),
                || self.diag(),
            )
        };
        if bound.ip().is_unspecified() {
            let loopback: std::net::IpAddr = if bound.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            SocketAddr::new(loopback, bound.port())
        } else {
            bound
        }
    }

    /// `GET /health/ready`: (status, health JSON).
    pub fn ready(&self) -> Option<(u16, Value)> {
        let (code, body) = http_get(self.admin(), "/health/ready").ok()?;
        Some((code, serde_json::from_str(&body).unwrap_or(Value::Null)))
    }

    /// Waits until `/health/ready` answers 200, at most [`WAIT`].
    #[track_caller]
    pub fn wait_ready(&self) {
        wait_for(
            &format!("{} to be ready", self.name),
            || self.ready().filter(|(c, _)| *c == 200),
            || self.diag(),
        );
    }

    /// `GET /status` as JSON, `None` while the agent does not answer.
    pub fn status(&self) -> Option<Value> {
        match http_get(self.admin(), "/status") {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// The running nodes of `/status`.
    pub fn running_nodes(&self) -> Option<Vec<String>> {
        let status = self.status()?;
        Some(
            status["running_nodes"]
                .as_array()?
                .iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect(),
        )
    }

    /// The incarnation of `node` in this agent's view.
    pub fn incarnation_of(&self, node: &str) -> Option<u64> {
        let status = self.status()?;
        status["members"]
            .as_array()?
            .iter()
            .find(|m| m["node"] == node)?["incarnation"]
            .as_str()
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
    }

    /// The value of `name` (a sample without labels) in `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (code, body) = http_get(self.admin(), "/metrics").ok()?;
        if code != 200 {
            return None;
        }
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    /// `autocluster status -c FILE`: (exit code, stdout).
    pub fn status_cli(&self) -> (Option<i32>, String) {
        let out = run(&["status", "-c", self.conf()]);
        (out.status.code(), text(&out.stdout))
    }

    /// The first line of `autocluster status -c FILE`, checked to exit 0.
    #[track_caller]
    pub fn status_line(&self) -> String {
        let out = run(&["status", "-c", self.conf()]);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "status failed: {stdout}{}\n{}",
            text(&out.stderr),
            self.diag()
        );
        stdout.lines().next().unwrap_or_default().to_string()
    }

    /// Waits until `autocluster status -c FILE` prints `line` first.
    #[track_caller]
    pub fn wait_status_line(&self, line: &str) {
        wait_for(
            &format!("`{line}` from `autocluster status -c {}`", self.conf()),
            || (self.status_line() == line).then_some(()),
            || format!("{}\n{}", self.status_cli().1, self.diag()),
        );
    }

    /// `autocluster status -c FILE --json`, checked to exit 0.
    pub fn status_json(&self) -> Value {
        let out = run(&["status", "-c", self.conf(), "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
    }

    /// CPU time it used so far (user and system), from `/proc` (Linux; `None` elsewhere).
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.proc.0.id())).ok()?;
        // The fields after the command's closing parenthesis: utime and stime are the 12th
        // and 13th, in clock ticks (USER_HZ, 100 a second).
        let mut rest = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
        let (utime, stime): (u64, u64) = (rest.next()?.parse().ok()?, rest.next()?.parse().ok()?);
        Some(Duration::from_millis((utime + stime) * 10))
    }

    /// Sends `sig` (`-TERM`, `-STOP`, `-CONT`).
    pub fn signal(&self, sig: &str) {
        self.proc.signal(sig);
    }

    /// SIGKILL, as a crash: no leave.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    pub fn running(&mut self) -> bool {
        self.proc.running()
    }

    /// Its exit status, once it exits within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        self.proc.wait_exit(within)
    }

    /// SIGTERM, then its exit code once it exits within [`WAIT`].
    pub fn stop(&mut self) -> Option<i32> {
        self.stop_within(WAIT)
    }

    /// SIGTERM, then its exit code once it exits within `within`.
    pub fn stop_within(&mut self, within: Duration) -> Option<i32> {
        self.signal("-TERM");
        self.wait_exit(within).and_then(|s| s.code())
    }
}

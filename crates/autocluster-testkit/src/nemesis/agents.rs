//! The agents of a nemesis run: real `autocluster agent` processes, each with its event
//! stream followed by a thread, and one poller that records every change of readiness and of
//! running members.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::history::{AgentState, HistoryWriter, Members, Record};

/// One agent: its name, configuration and process.
pub struct AgentProc {
    /// `node.name`.
    pub name: String,
    conf: PathBuf,
    log: PathBuf,
    /// Its admin endpoint.
    pub admin: SocketAddr,
    child: Option<Child>,
    /// What the harness did to it.
    pub state: AgentState,
    /// When it was last killed or left (a restart waits for its lease to run out).
    pub down_at: Option<Instant>,
    /// A program (with its arguments) that runs it, such as `ip netns exec ns1`; empty: none.
    pub wrapper: Vec<String>,
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// Normalizes an incarnation to lower-case hex without leading zeros.
pub fn hex(incarnation: &Value) -> String {
    match incarnation {
        Value::Number(n) => format!("{:x}", n.as_u64().unwrap_or(0)),
        Value::String(s) => u64::from_str_radix(s, 16)
            .map(|v| format!("{v:x}"))
            .unwrap_or_else(|_| s.clone()),
        _ => "?".to_string(),
    }
}

/// `GET path` over HTTP/1.0: (status, body).
pub fn http_get(addr: SocketAddr, path: &str, bound: Duration) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, bound)?;
    s.set_read_timeout(Some(bound))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

impl AgentProc {
    /// Writes `<dir>/<n>.conf` for `name` with `body` (the backend's lines); not started.
    pub fn new(dir: &Path, name: &str, body: &str) -> AgentProc {
        AgentProc::with_admin(dir, name, free_addr(), body)
    }

    /// As [`AgentProc::new`], with its admin endpoint on `admin`.
    pub fn with_admin(dir: &Path, name: &str, admin: SocketAddr, body: &str) -> AgentProc {
        let file = name.replace(['@', '.'], "_");
        let conf = dir.join(format!("{file}.conf"));
        std::fs::write(
            &conf,
            format!("node.name = {name}\nnode.admin_listen = {admin}\n{body}"),
        )
        .expect("the agent's configuration is written");
        AgentProc {
            name: name.to_string(),
            log: dir.join(format!("{file}.log")),
            conf,
            admin,
            child: None,
            state: AgentState {
                name: name.to_string(),
                live: false,
                paused: false,
                connected: true,
            },
            down_at: None,
            wrapper: Vec::new(),
        }
    }

    /// Starts the binary at `bin` (its stderr appended to `<name>.log`), through its
    /// [`wrapper`](AgentProc::wrapper) if it has one.
    pub fn start(&mut self, bin: &Path) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        for (k, _) in std::env::vars_os() {
            let k_text = k.to_string_lossy();
            if k_text.starts_with("AUTOCLUSTER_") || k_text == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .arg("agent")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.state.live = true;
        self.state.paused = false;
        Ok(())
    }

    /// Its log so far (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(sig)
                .arg(c.id().to_string())
                .status();
        }
    }

    /// SIGKILL, and waits for its end.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.state.live = false;
        self.state.paused = false;
        self.down_at = Some(Instant::now());
    }

    /// SIGTERM (a clean leave), and waits for its end (SIGKILL after `bound`).
    pub fn leave(&mut self, bound: Duration) -> Option<i32> {
        self.signal("-TERM");
        let deadline = Instant::now() + bound;
        let mut code = None;
        if let Some(c) = self.child.as_mut() {
            loop {
                if let Ok(Some(status)) = c.try_wait() {
                    code = status.code();
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.child = None;
        self.state.live = false;
        self.state.paused = false;
        self.down_at = Some(Instant::now());
        code
    }

    /// SIGSTOP.
    pub fn pause(&mut self) {
        self.signal("-STOP");
        self.state.paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        self.signal("-CONT");
        self.state.paused = false;
    }

    /// Whether the process exited on its own; its status when it did.
    pub fn exited(&mut self) -> Option<String> {
        let c = self.child.as_mut()?;
        match c.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// `/health/ready` answered 200, and this node's incarnation as its health says.
    pub fn ready(&self) -> Option<String> {
        let (code, _) = http_get(self.admin, "/health/ready", Duration::from_secs(2)).ok()?;
        if code != 200 {
            return None;
        }
        let status = status(self.admin)?;
        let health = &status["health"];
        (health["registered"] == true).then(|| hex(&health["incarnation"]))
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            self.signal("-CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `/status` as JSON.
fn status(admin: SocketAddr) -> Option<Value> {
    match http_get(admin, "/status", Duration::from_secs(1)) {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// The running members of `/status`.
pub fn running_members(admin: SocketAddr) -> Option<Members> {
    let status = status(admin)?;
    Some(
        status["members"]
            .as_array()?
            .iter()
            .filter(|m| m["status"] == "running")
            .filter_map(|m| Some((m["node"].as_str()?.to_string(), hex(&m["incarnation"]))))
            .collect(),
    )
}

/// Follows `GET /events` of the agent at `admin` on a thread, writing `subscribed` and every
/// event to `history` until the stream ends. Returns once the stream is open (or after 10 s).
pub fn follow_events(name: &str, admin: SocketAddr, history: &HistoryWriter) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match open_events(admin) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => return,
        }
    };
    let (name, history) = (name.to_string(), history.clone());
    std::thread::spawn(move || {
        for line in stream.lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let event = v["event"].as_str().unwrap_or_default();
            let record = match event {
                "subscribed" => Record::Subscribed {
                    observer: name.clone(),
                },
                "joined" | "left" | "updated" => Record::Event {
                    observer: name.clone(),
                    event: event.to_string(),
                    node: v["node"].as_str().unwrap_or("?").to_string(),
                    incarnation: hex(&v["member"]["incarnation"]),
                    reason: v["reason"].as_str().map(String::from),
                },
                // A lagged stream lost events: a new life of the stream for the checker.
                _ => Record::Subscribed {
                    observer: name.clone(),
                },
            };
            history.write(record);
        }
    });
}

fn open_events(admin: SocketAddr) -> std::io::Result<BufReader<TcpStream>> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /events HTTP/1.0\r\nHost: {admin}\r\n\r\n")?;
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    reader.read_line(&mut head)?;
    if !head.contains(" 200 ") {
        return Err(std::io::Error::other(head));
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
    }
    reader.get_ref().set_read_timeout(None)?;
    Ok(reader)
}

/// What the poller needs to know of each agent.
#[derive(Clone)]
pub struct Polled {
    /// Its name.
    pub name: String,
    /// Its admin endpoint.
    pub admin: SocketAddr,
    /// Asked only while live and not paused.
    pub askable: bool,
}

/// The poller: every `every`, asks each askable agent `/health/ready` and `/status`, and
/// writes a `ready` or `view` line when either changed. Stops when `stop` is set.
pub fn poll(
    agents: Arc<Mutex<Vec<Polled>>>,
    history: HistoryWriter,
    views: Arc<Mutex<std::collections::HashMap<String, Members>>>,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut ready: std::collections::HashMap<String, bool> = Default::default();
        while !stop.load(Ordering::Relaxed) {
            let list = agents.lock().unwrap_or_else(|p| p.into_inner()).clone();
            for a in list {
                let is_ready = a.askable
                    && matches!(
                        http_get(a.admin, "/health/ready", Duration::from_secs(1)),
                        Ok((200, _))
                    );
                if ready.get(&a.name) != Some(&is_ready) {
                    ready.insert(a.name.clone(), is_ready);
                    history.write(Record::Ready {
                        agent: a.name.clone(),
                        ready: is_ready,
                    });
                }
                let Some(members) = a.askable.then(|| running_members(a.admin)).flatten() else {
                    continue;
                };
                let mut views = views.lock().unwrap_or_else(|p| p.into_inner());
                if views.get(&a.name) != Some(&members) {
                    views.insert(a.name.clone(), members.clone());
                    history.write(Record::View {
                        observer: a.name.clone(),
                        members,
                    });
                }
            }
            std::thread::sleep(every);
        }
    })
}

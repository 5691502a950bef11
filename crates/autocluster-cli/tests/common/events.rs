//! Membership events as the agent streams them: `autocluster members --watch` (the command an
//! operator runs) or a raw `GET /events`, one JSON object a line, read by a thread into a
//! channel and consumed in order.
//!
//! Both start with `{"event":"subscribed",...}`, written once the agent's subscription is in
//! place; a follower is returned only after that line, so no later event can be missed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{autocluster, Proc, WAIT};

/// A follower of an agent's events.
pub struct Events {
    rx: Receiver<String>,
    /// Every line read so far, for failure messages.
    seen: Vec<String>,
    source: Source,
}

/// Where the lines come from; dropping it ends the reading thread.
enum Source {
    /// `autocluster members --watch`, and the thread reading its stderr.
    Watcher(Proc, Option<JoinHandle<String>>),
    Socket(TcpStream),
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Source::Socket(s) = self {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// The non-empty lines of `reader`, sent by a thread until the stream ends.
fn lines_into_channel(reader: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if !line.trim().is_empty() && tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Events {
    /// `autocluster members ARGS --watch` (ARGS: `-c FILE` or `--admin ADDR`), once it printed
    /// that the agent subscribed it.
    #[track_caller]
    pub fn watch(args: &[&str]) -> Events {
        let mut cmd_args = vec!["members"];
        cmd_args.extend_from_slice(args);
        cmd_args.push("--watch");
        let mut child = autocluster(&cmd_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let rx = lines_into_channel(child.stdout.take().unwrap());
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Events::subscribed(rx, Source::Watcher(Proc(child), Some(stderr)))
    }

    /// `GET /events` on `admin`, once the agent answered 200 and wrote that the subscription
    /// is in place.
    #[track_caller]
    pub fn subscribe(admin: SocketAddr) -> Events {
        let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /events HTTP/1.0\r\nHost: {admin}\r\n\r\n").unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut head = String::new();
        reader.read_line(&mut head).unwrap();
        assert!(head.contains(" 200 "), "/events answered {head}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
        }
        // From here on the reading thread waits as long as the stream lasts.
        s.set_read_timeout(None).unwrap();
        Events::subscribed(lines_into_channel(reader), Source::Socket(s))
    }

    /// Reads lines until one is `{"event":"subscribed",...}`, at most [`WAIT`].
    #[track_caller]
    fn subscribed(rx: Receiver<String>, source: Source) -> Events {
        let mut events = Events {
            rx,
            seen: Vec::new(),
            source,
        };
        let line = events.expect_with(
            WAIT,
            "the first line, {\"event\":\"subscribed\",...}",
            |e| e["event"] == "subscribed",
            &String::new,
        );
        assert!(
            line["revision"].is_u64() && line["members"].is_u64(),
            "a revision and a member count: {line}"
        );
        events
    }

    /// The next line, whatever event it is; panics after `within`.
    #[track_caller]
    pub fn next(&mut self, within: Duration, what: &str, diag: &dyn Fn() -> String) -> Value {
        self.expect_with(within, what, |_| true, diag)
    }

    /// The next `kind` event of `node`, skipping others; panics after [`WAIT`].
    #[track_caller]
    pub fn expect(&mut self, kind: &str, node: &str, diag: &dyn Fn() -> String) -> Value {
        self.expect_with(
            WAIT,
            &format!("a {kind} event for {node}"),
            |e| e["event"] == kind && e["node"] == node,
            diag,
        )
    }

    /// The next event `want` accepts, skipping others; panics after `within` or when the
    /// stream ends.
    #[track_caller]
    fn expect_with(
        &mut self,
        within: Duration,
        what: &str,
        want: impl Fn(&Value) -> bool,
        diag: &dyn Fn() -> String,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.rx.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => {
                    let why = match e {
                        RecvTimeoutError::Timeout => format!("not within {within:?}"),
                        RecvTimeoutError::Disconnected => "the stream ended".to_string(),
                    };
                    panic!(
                        "waited for {what}: {why}; lines so far:\n{}\n{}{}",
                        self.seen.join("\n"),
                        self.stderr_if_ended(),
                        diag()
                    )
                }
            };
            self.seen.push(line.clone());
            let event: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not one JSON object a line ({e}): {line}"));
            if want(&event) {
                return event;
            }
        }
    }

    /// The next line, or `None` when none comes within `within`; panics when the stream
    /// ends.
    pub fn next_within(&mut self, within: Duration) -> Option<Value> {
        match self.rx.recv_timeout(within) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(serde_json::from_str(&line).expect("one JSON object a line"))
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the event stream ended: {}", self.stderr_if_ended())
            }
        }
    }

    /// The events already read, without waiting.
    pub fn drain(&mut self) -> Vec<Value> {
        let lines: Vec<String> = self.rx.try_iter().collect();
        self.seen.extend(lines.iter().cloned());
        lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
            .collect()
    }

    /// Whether the watcher process still runs.
    pub fn running(&mut self) -> bool {
        match &mut self.source {
            Source::Watcher(proc, _) => proc.running(),
            Source::Socket(_) => panic!("a raw subscription has no process"),
        }
    }

    /// Waits until the watcher process exits by itself, within `within`: its status and
    /// stderr.
    pub fn end(&mut self, within: Duration) -> (Option<ExitStatus>, String) {
        let Source::Watcher(proc, stderr) = &mut self.source else {
            panic!("a raw subscription has no process");
        };
        let status = proc.wait_exit(within);
        if status.is_none() {
            proc.kill();
        }
        let stderr = stderr.take().map(|t| t.join().unwrap()).unwrap_or_default();
        (status, stderr)
    }

    /// The watcher's stderr, when it has exited (a watcher that could not connect says why).
    fn stderr_if_ended(&mut self) -> String {
        let Source::Watcher(proc, stderr) = &mut self.source else {
            return String::new();
        };
        if proc.running() {
            return String::new();
        }
        let text = stderr.take().map(|t| t.join().unwrap()).unwrap_or_default();
        format!("the watcher exited; its stderr:\n{text}\n")
    }
}

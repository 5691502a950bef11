//! A child process that is killed and reaped when its handle drops, also when a test fails.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A child process, killed (SIGKILL, which also ends a stopped one) and reaped when dropped.
pub struct Proc(pub Child);

impl Proc {
    /// Sends `sig` (as `kill` takes it: `-TERM`, `-STOP`, `-CONT`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.0.id());
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }

    /// Its exit status, once it exits within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

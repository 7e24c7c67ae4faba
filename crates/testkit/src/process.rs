//! Child processes a test starts (an agent, a server) and waiting for what they do.

use std::process::Child;
use std::time::{Duration, Instant};

/// A child process killed and reaped on drop, so a failing test leaves nothing running.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Sends SIGTERM and asserts that the process exits with status 0 (a clean stop).
    pub fn terminate(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
            .unwrap_or_else(|e| panic!("SIGTERM to {pid}: {e}"));
        let status = self.0.wait().unwrap_or_else(|e| panic!("wait {pid}: {e}"));
        assert!(status.success(), "process {pid} stopped with {status}");
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback TCP port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// Polls `f` every 100 ms until it holds; panics naming `what` (and whatever `context`
/// returns then, e.g. a log) after `timeout`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut context: impl FnMut() -> String,
    mut f: impl FnMut() -> bool,
) {
    let until = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < until,
            "timed out waiting for: {what}{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

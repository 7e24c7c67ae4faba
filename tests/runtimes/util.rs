//! Running commands with errors that say what ran and what it printed, unique names and
//! free subnets.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs the command, returns its output whatever the exit status.
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot execute `{}`: {e}", describe(cmd)))
}

/// Runs the command and returns stdout; panics with stdout and stderr when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    if !out.status.success() {
        panic!(
            "`{}` failed ({}):\nstdout: {}\nstderr: {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sh(program: &str, args: &[&str]) -> String {
    run(Command::new(program).args(args))
}

/// Polls `probe` until it returns Some or the timeout passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);
// Tests of one process ask before any of them has created its bridge.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u8>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A short name unique across this process's tests and concurrent test processes, short
/// enough for a Linux link name (checked).
pub use unicni_testkit::unique_ifname as unique;

/// A /24 inside 10.213.0.0/16 that no route on this host uses yet.
///
/// Test processes running at the same time each start at a different offset (their PID)
/// and skip subnets already routed, so their bridges never share a subnet.
pub fn free_subnet() -> (String, u8) {
    let routes = sh("ip", &["-4", "route", "show", "table", "all"]);
    let start =
        (std::process::id() as usize + COUNTER.fetch_add(1, Ordering::SeqCst) as usize * 7) % 250;
    let mut taken = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..250 {
        let third = ((start + i) % 250 + 1) as u8;
        let prefix = format!("10.213.{third}.");
        if !routes.contains(&prefix) && taken.insert(third) {
            return (format!("10.213.{third}.0/24"), third);
        }
    }
    panic!("no free /24 left in 10.213.0.0/16 on this host (ip route shows all of them)");
}

//! Running a command line in a test, with failures that say what ran and what it printed.

use std::process::{Command, Output};

/// Runs `args[0]` with the rest as arguments; returns its output whatever the exit status.
pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"))
}

/// Runs the command line and returns its stdout; panics with its stderr when it fails.
pub fn must(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

//! A lab of the test's own (`unicni lab --id`), removed by `lab down` whatever happens.

use serde_json::Value;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Lab {
    pub id: String,
}

impl Lab {
    /// `tag` keeps labs of different tests apart; the process id keeps test runs apart.
    pub fn new(tag: &str) -> Lab {
        Lab {
            id: format!("{tag}{:04x}", std::process::id() & 0xffff),
        }
    }

    pub fn unicni(&self, args: &[&str]) -> Output {
        Command::new(super::BIN)
            .args(["lab", "--id", &self.id])
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `unicni lab ARGS`, fails the test with its output unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.unicni(args);
        assert!(
            out.status.success(),
            "unicni lab {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl ARGS` against the lab's emulated API server (`--store kubernetes`), run in
    /// the VPC namespace where it listens, with the lab's CA and admin token as flags.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        use std::process::Stdio;
        let dir = format!("{}/kube", self.root());
        let token = std::fs::read_to_string(format!("{dir}/token")).unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns("vpc"), "kubectl"])
            .args(["--server", "https://192.168.250.1:6443"])
            .arg(format!("--certificate-authority={dir}/ca.crt"))
            .arg(format!("--token={}", token.trim()))
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// [`Lab::kubectl`], failing the test with its output unless it succeeds; its stdout.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A lab namespace by suffix: `vpc`, `n1`, `n1-p2`.
    pub fn ns(&self, suffix: &str) -> String {
        format!("ulab{}-{suffix}", self.id)
    }

    pub fn node_ns(&self, node: usize) -> String {
        self.ns(&format!("n{node}"))
    }

    pub fn root(&self) -> String {
        format!("/run/unicni-lab-{}", self.id)
    }

    /// What the lab recorded it built (`lab.json`).
    pub fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(format!("{}/lab.json", self.root())).unwrap())
            .unwrap()
    }

    /// Runs a command inside node `node`'s namespace and returns its stdout.
    pub fn in_node(&self, node: usize, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.node_ns(node)])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `lab check --output json`.
    pub fn check(&self) -> Value {
        let out = self.unicni(&["check", "--output", "json"]);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Fails the test when any of this lab's namespaces is left.
    pub fn assert_no_namespaces(&self) {
        let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let listed = String::from_utf8_lossy(&ns.stdout);
        let prefix = format!("ulab{}-", self.id);
        assert!(!listed.contains(&prefix), "namespaces left: {listed}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.unicni(&["down"]);
    }
}

/// Polls `f` every 200 ms until it holds; fails the test after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < until,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The checks of a `lab check --output json` report that did not pass.
pub fn failed_checks(v: &Value) -> Vec<String> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] != true)
        .map(|c| c.to_string())
        .collect()
}

/// Fails the test unless process `pid` (`what`) is gone, or a zombie waiting for whoever
/// inherited it to reap it.
pub fn assert_gone(pid: impl std::fmt::Display, what: &str) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().unwrap_or_default().trim_start();
    assert!(
        stat.is_empty() || state.starts_with('Z'),
        "{what} {pid} still running: {stat}"
    );
}

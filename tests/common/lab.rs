//! A lab of the test's own (`unicni lab --id`), removed by `lab down` whatever happens.

use serde_json::Value;
use std::process::{Command, Output};

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
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.unicni(&["down"]);
    }
}

//! `unicni cloud-sim` on a loopback port, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Sim {
    child: Child,
    pub endpoint: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the emulator with `config` and waits for the `endpoint=` line it prints.
pub fn start(config: &Path) -> Sim {
    let mut child = Command::new(super::BIN)
        .args(["cloud-sim", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoint = line
        .trim()
        .strip_prefix("endpoint=")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Sim { child, endpoint }
}

//! A real etcd server (Debian's etcd-server) for a test: free loopback ports, its own data
//! directory, killed on drop.

use crate::process::{free_port, KillOnDrop};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ETCD: &str = "/usr/bin/etcd";

/// A running single-member etcd.
#[derive(Debug)]
pub struct Etcd {
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
    /// The client URL, `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Etcd {
    /// Starts etcd and waits (15 s at most) until it accepts connections. `None` after a
    /// note on stderr when etcd is not installed, except under CI, where it panics.
    pub fn start() -> Option<Etcd> {
        if !Path::new(ETCD).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "etcd-server missing in CI"
            );
            eprintln!("skipping: {ETCD} not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("etcd data dir: {e}"));
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(ETCD)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", "t", "--listen-client-urls", &url])
            .args(["--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("t={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot execute {ETCD}: {e}"));
        let child = KillOnDrop(child);
        let until = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
            assert!(Instant::now() < until, "etcd did not start on {url}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Etcd {
            _child: child,
            _dir: dir,
            url,
        })
    }
}

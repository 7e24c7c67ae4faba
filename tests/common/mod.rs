//! Shared helpers for the root-only integration tests: unique names, namespaces and
//! networks that clean themselves up, and a way to run the plugin like a runtime does.
#![allow(dead_code)]

pub mod lab;
pub mod sim;

use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub const BIN: &str = env!("CARGO_BIN_EXE_unicni");

static COUNTER: AtomicU32 = AtomicU32::new(0);
static NETWORKS: AtomicU32 = AtomicU32::new(0);

/// Root tests skip with a note when run unprivileged by a developer; in CI they must run.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "root-only test run without root in CI"
    );
    eprintln!("skipping: needs root");
    false
}

/// A short name unique across parallel tests and concurrent test processes.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{:04x}{n:02x}", std::process::id() & 0xffff)
}

pub struct Netns {
    pub name: String,
    pub path: String,
}

impl Netns {
    pub fn new() -> Netns {
        let name = unique("unt");
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        Netns {
            path: format!("/var/run/netns/{name}"),
            name,
        }
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap()
    }

    pub fn ping(&self, target: &str) -> bool {
        self.exec(&["ping", "-c", "1", "-W", "2", target])
            .status
            .success()
    }

    pub fn links(&self) -> Vec<String> {
        let out = self.exec(&["ip", "-o", "link", "show"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A test's own network: unique bridge, name, address range and state directory.
pub struct TestNet {
    pub dir: tempfile::TempDir,
    pub name: String,
    pub bridge: String,
    pub a: u32,
    pub b: u32,
}

impl TestNet {
    pub fn new() -> TestNet {
        let n = NETWORKS.fetch_add(1, Ordering::SeqCst);
        TestNet {
            dir: tempfile::tempdir().unwrap(),
            name: unique("unicni-test-"),
            bridge: unique("ubr"),
            a: 100 + (n % 100),
            b: 1 + (std::process::id() % 200),
        }
    }

    pub fn cluster(&self) -> String {
        format!("10.{}.0.0/16", self.a)
    }
    pub fn subnet(&self) -> String {
        format!("10.{}.{}.0/24", self.a, self.b)
    }
    pub fn gateway(&self) -> String {
        format!("10.{}.{}.1", self.a, self.b)
    }
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn ipam_dir(&self) -> PathBuf {
        self.state_dir().join("ipam").join(&self.name)
    }

    pub fn conf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": self.name,
            "type": "unicni",
            "backend": "flannel",
            "clusterNetwork": self.cluster(),
            "subnet": self.subnet(),
            "bridge": self.bridge,
            "mtu": 1450,
            "stateDir": self.state_dir(),
            "runDir": self.dir.path().join("run"),
            "ipMasq": true,
        })
    }

    /// Replaces `{a}` / `{b}` placeholders in fixture text with this network's octets.
    pub fn fill(&self, text: &str) -> String {
        text.replace("{a}", &self.a.to_string())
            .replace("{b}", &self.b.to_string())
    }

    /// Addresses reserved on disk right now.
    pub fn reservations(&self) -> Vec<String> {
        std::fs::read_dir(self.ipam_dir().join("ip"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Host links enslaved to this network's bridge (the pods' host-side veths).
    pub fn bridge_ports(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .collect()
    }

    pub fn bridge_exists(&self) -> bool {
        link_exists(&self.bridge)
    }

    pub fn nft_table(&self) -> String {
        format!(
            "unicni_{}",
            self.name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>()
        )
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.nft_table()])
            .stderr(Stdio::null())
            .status();
    }
}

pub fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The result of one plugin execution.
pub struct CniOut {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CniOut {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?} / {}",
                self.stdout, self.stderr
            )
        })
    }
    pub fn code(&self) -> u64 {
        assert!(!self.ok, "expected an error, got success: {}", self.stdout);
        self.json()["code"].as_u64().expect("error JSON has a code")
    }
}

/// A plugin invocation with the environment a runtime sets.
pub struct Invocation {
    pub env: Vec<(String, Option<String>)>,
    pub stdin: String,
}

impl Invocation {
    pub fn new(command: &str, container: &str, netns: &str, conf: &Value) -> Invocation {
        Invocation {
            env: vec![
                ("CNI_COMMAND".into(), Some(command.into())),
                ("CNI_CONTAINERID".into(), Some(container.into())),
                ("CNI_NETNS".into(), Some(netns.into())),
                ("CNI_IFNAME".into(), Some("eth0".into())),
                ("CNI_PATH".into(), Some("/opt/cni/bin".into())),
                (
                    "CNI_ARGS".into(),
                    Some("IgnoreUnknown=1;K8S_POD_NAMESPACE=test;K8S_POD_NAME=p".into()),
                ),
            ],
            stdin: conf.to_string(),
        }
    }

    pub fn set(mut self, key: &str, value: Option<&str>) -> Invocation {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.map(str::to_string)));
        self
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    pub fn run(&self) -> CniOut {
        let mut child = self.command().spawn().expect("spawn unicni");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        CniOut {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub fn cni(command: &str, container: &str, netns: &str, conf: &Value) -> CniOut {
    Invocation::new(command, container, netns, conf).run()
}

//! Shared helpers for the root-only integration tests: unique names, namespaces and
//! networks that clean themselves up, and a way to run the plugin like a runtime does.
#![allow(dead_code)]

pub mod agent;
pub mod lab;
pub mod sim;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

// Each test binary uses part of this module.
#[allow(unused_imports)]
pub use unicni_testkit::{free_port, require_root, unique, CniOutput, CniRun, KillOnDrop, Netns};

pub const BIN: &str = env!("CARGO_BIN_EXE_unicni");

static NETWORKS: AtomicU32 = AtomicU32::new(0);

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

/// The plugin invocation a runtime makes for a pod of namespace `test`: this binary, the
/// `CNI_*` environment, `conf` on stdin.
pub fn invocation(command: &str, container: &str, netns: &str, conf: &Value) -> CniRun {
    CniRun::new(BIN, command)
        .container_id(container)
        .netns(netns)
        .args("IgnoreUnknown=1;K8S_POD_NAMESPACE=test;K8S_POD_NAME=p")
        .config(conf)
}

pub fn cni(command: &str, container: &str, netns: &str, conf: &Value) -> CniOutput {
    invocation(command, container, netns, conf).run()
}

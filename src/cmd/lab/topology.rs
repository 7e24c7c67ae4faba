//! The lab's names and places: one prefix for everything, so cleanup can find it all.

use crate::cmd::common;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;

pub const PREFIX: &str = "ulab";
pub const NETWORK: &str = "unicni-lab";
pub const BRIDGE: &str = "ulab0";
pub const CLUSTER_CIDR: &str = "10.250.0.0/16";
pub const NODE_SUBNET: &str = "10.250.1.0/24";

pub struct Lab {
    pub root: PathBuf,
    pub exe: PathBuf,
}

impl Lab {
    pub fn new() -> Result<Lab> {
        Ok(Lab {
            root: PathBuf::from("/run/unicni-lab"),
            exe: std::env::current_exe().context("locate the unicni binary")?,
        })
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("unicni.toml")
    }
    pub fn conf_dir(&self) -> PathBuf {
        self.root.join("net.d")
    }
    pub fn bin_dir(&self) -> PathBuf {
        self.root.join("bin")
    }
    pub fn plugin(&self) -> PathBuf {
        self.bin_dir().join("unicni")
    }
    pub fn conflist(&self) -> Result<String> {
        let p = self.conf_dir().join("10-unicni.conflist");
        std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))
    }

    pub fn config_text(&self) -> String {
        format!(
            "[cluster]\nname = \"lab\"\n\n[flannel]\nnetwork = \"{CLUSTER_CIDR}\"\nnode_subnet = \"{NODE_SUBNET}\"\n\
             bridge = \"{BRIDGE}\"\n\n[cni]\nnetwork_name = \"{NETWORK}\"\n\n[store]\npath = \"{root}/store\"\n\n\
             [node]\nname = \"lab-node-1\"\nstate_dir = \"{root}/state\"\nrun_dir = \"{root}/run\"\n",
            root = self.root.display()
        )
    }

    /// Writes the lab config and runs the real `unicni install` on it.
    pub fn install(&self) -> Result<()> {
        std::fs::create_dir_all(&self.root)?;
        common::write_atomic(&self.config_path(), self.config_text().as_bytes(), 0o644)?;
        let status = Command::new(&self.exe)
            .arg("install")
            .arg("--config")
            .arg(self.config_path())
            .arg("--cni-conf-dir")
            .arg(self.conf_dir())
            .arg("--cni-bin-dir")
            .arg(self.bin_dir())
            .status()
            .context("run unicni install")?;
        anyhow::ensure!(status.success(), "unicni install failed for the lab");
        Ok(())
    }

    /// Removes every lab namespace, link, rule table and directory. Safe to repeat.
    pub fn destroy(&self) -> Result<()> {
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or("");
                if name.starts_with(PREFIX) {
                    let _ = Command::new("ip").args(["netns", "del", name]).status();
                }
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", BRIDGE])
            .stderr(std::process::Stdio::null())
            .status();
        unicni_flannel::masq::remove(&unicni_flannel::masq::table_name(NETWORK))?;
        if self.root.exists() {
            std::fs::remove_dir_all(&self.root)
                .with_context(|| format!("remove {}", self.root.display()))?;
        }
        Ok(())
    }
}

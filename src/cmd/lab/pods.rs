//! Lab pods: a network namespace attached by executing the installed plugin, as a
//! container runtime would.

use super::topology::{Lab, PREFIX};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::process::{Command, Stdio};

pub struct Pod {
    pub name: String,
    pub netns: String,
    pub ip: String,
}

impl Lab {
    fn cni(&self, command: &str, index: usize, netns: &str) -> Result<std::process::Output> {
        let conflist = self.conflist()?;
        let mut child = Command::new(self.plugin())
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", format!("{PREFIX}-container-{index}"))
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", self.bin_dir())
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=lab;K8S_POD_NAME=pod-{index}"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("execute the unicni plugin")?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(conflist.as_bytes())?;
        Ok(child.wait_with_output()?)
    }

    pub fn add_pod(&self, index: usize) -> Result<Pod> {
        let ns = format!("{PREFIX}-pod-{index}");
        let st = Command::new("ip").args(["netns", "add", &ns]).status()?;
        anyhow::ensure!(st.success(), "create network namespace {ns}");
        let out = self.cni("ADD", index, &format!("/var/run/netns/{ns}"))?;
        if !out.status.success() {
            bail!(
                "CNI ADD for pod-{index} failed: {}",
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        let result: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("decode the CNI ADD result")?;
        let ip = result["ips"][0]["address"]
            .as_str()
            .context("CNI result has no address")?
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        Ok(Pod {
            name: format!("pod-{index}"),
            netns: ns,
            ip,
        })
    }

    pub fn teardown_pods(&self, count: usize) -> Result<()> {
        for i in 1..=count {
            let ns = format!("/var/run/netns/{PREFIX}-pod-{i}");
            let out = self.cni("DEL", i, &ns)?;
            if !out.status.success() {
                bail!("CNI DEL for pod-{i} failed: {}", String::from_utf8_lossy(&out.stdout));
            }
        }
        Ok(())
    }
}

//! Lab pods: a network namespace attached by executing the installed plugin inside the
//! node's namespace with CNI env and the conflist on stdin, as a container runtime would.

use super::topology::{sh, Lab, PodState};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::process::{Command, Stdio};

impl Lab {
    fn cni(
        &self,
        command: &str,
        node: usize,
        container_id: &str,
        netns: &str,
    ) -> Result<std::process::Output> {
        let p = self.conf_dir(node).join("10-unicni.conflist");
        let conflist =
            std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.node_ns(node)])
            .arg(self.plugin())
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", self.bin_dir())
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=lab;K8S_POD_NAME={container_id}"),
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

    /// Creates pod `j` of node `node` through CNI ADD.
    pub fn add_pod(&self, node: usize, j: usize) -> Result<PodState> {
        let ns = self.pod_ns(node, j);
        sh(&["ip", "netns", "add", &ns])?;
        let id = format!("{ns}-c");
        let out = self.cni("ADD", node, &id, &format!("/var/run/netns/{ns}"))?;
        if !out.status.success() {
            bail!(
                "CNI ADD of pod {j} on node {node} failed: {}",
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
        Ok(PodState {
            name: format!("n{node}-p{j}"),
            node,
            netns: ns,
            ip,
            container_id: id,
        })
    }

    pub fn del_pod(&self, pod: &PodState) -> Result<()> {
        let out = self.cni(
            "DEL",
            pod.node,
            &pod.container_id,
            &format!("/var/run/netns/{}", pod.netns),
        )?;
        if !out.status.success() {
            bail!(
                "CNI DEL of pod {} failed: {}",
                pod.name,
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(())
    }
}

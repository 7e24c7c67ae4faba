//! Lab pods: a network namespace attached by executing the installed plugin inside the
//! node's namespace with CNI env and the conflist on stdin, as a container runtime would.
//! Before ADD the lab writes the pod's manifest (a Kubernetes Pod: name, namespace,
//! annotations, owner) where a terway agent reads it, as the API server would serve it.

use super::topology::{sh, Backend, Lab, PodState, OTHER, POD_NAMESPACE};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use unicni_testkit::{CniOutput, CniRun};

static GENERATION: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Executes the installed plugin for `command` on `pod` inside its node's namespace, as
    /// the node's runtime would; the plugin's output, also when it failed.
    pub(super) fn cni_run(&self, command: &str, pod: &PodState) -> Result<CniOutput> {
        let p = self.conf_dir(pod.node).join("10-unicni.conflist");
        let conflist =
            std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
        let container_id = &pod.container_id;
        CniRun::new(self.plugin(), command)
            .container_id(container_id)
            .netns(format!("/var/run/netns/{}", pod.netns))
            .cni_path(self.bin_dir())
            .args(&format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};\
                 K8S_POD_INFRA_CONTAINER_ID={container_id}",
                self.pod_namespace(pod),
                pod.name
            ))
            .stdin(conflist)
            .try_run_via(&["ip", "netns", "exec", &self.node_ns(pod.node)])
            .context("execute the unicni plugin")
    }

    /// [`Lab::cni_run`] that must succeed: what it printed.
    pub(super) fn cni(&self, command: &str, pod: &PodState) -> Result<String> {
        let out = self.cni_run(command, pod)?;
        if !out.ok {
            bail!(
                "CNI {command} of pod {} on node {} failed: {}",
                pod.name,
                pod.node,
                out.stdout
            );
        }
        Ok(out.stdout)
    }

    /// `<pod info dir>/<namespace>_<name>.yaml`: the Pod object the agent looks up.
    pub(super) fn write_manifest(&self, pod: &PodState) -> Result<()> {
        let dir = self.pod_info_dir(pod.node);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let mut metadata = serde_json::json!({
            "name": pod.name,
            "namespace": POD_NAMESPACE,
            "uid": format!("uid-{}", pod.netns),
            "annotations": pod.annotations,
        });
        if let Some(kind) = &pod.owner_kind {
            metadata["ownerReferences"] = serde_json::json!([{
                "apiVersion": "apps/v1",
                "kind": kind,
                "name": pod.name.rsplit_once('-').map(|(a, _)| a).unwrap_or(&pod.name),
                "uid": format!("uid-owner-{}", pod.name),
                "controller": true,
            }]);
        }
        let manifest = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {"nodeName": self.node_name(pod.node)},
        });
        // JSON is YAML: the agent reads either.
        Ok(unicni_fsutil::write_atomic(
            &dir.join(format!("{POD_NAMESPACE}_{}.yaml", pod.name)),
            serde_json::to_string_pretty(&manifest)?.as_bytes(),
            0o644,
        )?)
    }

    /// Creates pod `j` of node `node` through CNI ADD; terway pods get their manifest
    /// (with `annotations` and an owner of kind `owner_kind`) first.
    pub fn add_pod(
        &self,
        backend: Backend,
        node: usize,
        j: usize,
        annotations: BTreeMap<String, String>,
        owner_kind: Option<&str>,
    ) -> Result<PodState> {
        let ns = self.pod_ns(node, j);
        sh(&["ip", "netns", "add", &ns])?;
        let mut pod = PodState {
            name: self.pod_name(node, j),
            node,
            netns: ns.clone(),
            ip: String::new(),
            ip6: None,
            container_id: format!("{ns}-c"),
            annotations,
            owner_kind: owner_kind.map(str::to_string),
        };
        self.attach(backend, &mut pod)?;
        Ok(pod)
    }

    /// CNI ADD of `pod` into its (existing) namespace; fills in its addresses. On the
    /// Kubernetes store in the kubelet's order: the Pod object exists before the ADD and
    /// gets the addresses in its status after it.
    fn attach(&self, backend: Backend, pod: &mut PodState) -> Result<()> {
        let kube = self.on_kube() && pod.node != OTHER;
        if kube {
            self.create_pod_object(pod)?;
        } else if backend == Backend::Terway {
            self.write_manifest(pod)?;
        }
        let result: serde_json::Value =
            serde_json::from_str(&self.cni("ADD", pod)?).context("decode the CNI ADD result")?;
        let addrs: Vec<String> = result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str())
            .map(|a| a.split('/').next().unwrap_or_default().to_string())
            .collect();
        pod.ip = addrs
            .iter()
            .find(|a| !a.contains(':'))
            .cloned()
            .context("the CNI ADD result has no IPv4 address")?;
        pod.ip6 = addrs.iter().find(|a| a.contains(':')).cloned();
        if kube {
            self.record_pod_ips(pod)?;
        }
        Ok(())
    }

    /// CNI DEL, then (Kubernetes store) the Pod object goes.
    pub fn del_pod(&self, pod: &PodState) -> Result<()> {
        self.cni("DEL", pod)?;
        if self.on_kube() && pod.node != OTHER {
            self.delete_pod_object(pod)?;
        }
        Ok(())
    }

    /// The pod's sandbox is deleted (CNI DEL, namespace removed) and a new one started for
    /// the same namespace/name: a new namespace, a new container ID, CNI ADD. `pod` is
    /// updated to the new sandbox, also when the ADD fails (then it has no address).
    pub fn recreate_pod(&self, backend: Backend, pod: &mut PodState) -> Result<()> {
        self.del_pod(pod)?;
        sh(&["ip", "netns", "del", &pod.netns])?;
        sh(&["ip", "netns", "add", &pod.netns])?;
        pod.container_id = format!(
            "{}-c{}{}",
            pod.netns,
            std::process::id(),
            GENERATION.fetch_add(1, Ordering::Relaxed)
        );
        pod.ip.clear();
        pod.ip6 = None;
        self.attach(backend, pod)
    }
}

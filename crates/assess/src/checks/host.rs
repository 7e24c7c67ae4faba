//! Workloads tied to nodes' own addresses: NodePort, hostPort, hostNetwork.

use super::{plural, CheckId};
use crate::context::Context;
use crate::inventory::ServiceType;
use crate::{CheckResult, Finding};
use std::collections::{BTreeMap, BTreeSet};

pub fn run(cx: &Context) -> CheckResult {
    let id = CheckId::HostDependencies;
    let inv = cx.inv;
    let mut findings = Vec::new();
    let portmap = cx.target.config.cni.chain.iter().any(|p| p == "portmap");

    let mut host_ports: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    let mut host_network: BTreeSet<String> = BTreeSet::new();
    let mut host_network_pods = 0u64;
    for p in inv
        .pods
        .iter()
        .filter(|p| p.host_network || !p.host_ports.is_empty())
    {
        let workload = match &p.owner {
            Some(o) => format!("{}/{}", p.namespace, o),
            None => format!("{}/pod/{}", p.namespace, p.name),
        };
        if p.host_network {
            host_network_pods += 1;
            host_network.insert(workload);
        } else if !p.host_ports.is_empty() {
            host_ports
                .entry(workload)
                .or_default()
                .extend(&p.host_ports);
        }
    }
    for (workload, ports) in &host_ports {
        let ports: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        let mut remedy =
            "point clients at a Service instead of node addresses, or update them as nodes move"
                .to_string();
        if !portmap {
            remedy = format!(
                "add \"portmap\" to cni.chain in the target config (hostPort needs it); {remedy}"
            );
        }
        findings.push(Finding::warning(
            workload,
            format!("publishes hostPort {} on node addresses, which change when the pods move to the new nodes", ports.join(", ")),
            remedy,
        ));
    }
    let mut lbs = 0u64;
    for s in &inv.services {
        match s.service_type {
            ServiceType::NodePort => findings.push(Finding::warning(
                format!("service/{}/{}", s.namespace, s.name),
                format!("NodePort {} is reached on node addresses, which change in the new cluster", s.node_ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")),
                "move clients to a LoadBalancer or Ingress, or update them with the new node addresses",
            )),
            ServiceType::LoadBalancer => lbs += 1,
            _ => {}
        }
    }
    if lbs > 0 {
        findings.push(Finding::info(
            "cluster",
            format!(
                "{} will be re-pointed at the new cluster's backends by the cloud controller",
                plural(lbs, "LoadBalancer service", "LoadBalancer services")
            ),
        ));
    }
    if host_network_pods > 0 {
        findings.push(Finding::info(
            "cluster",
            format!(
                "{} ({}) use the host network: the pod network does not affect them; kubelet max-pods must count them on top of the target's per-node pods",
                plural(host_network_pods, "pod", "pods"),
                plural(host_network.len() as u64, "workload", "workloads")
            ),
        ));
    }
    let summary = format!(
        "{} with hostPort, {} NodePort services, {} hostNetwork pods",
        plural(host_ports.len() as u64, "workload", "workloads"),
        inv.services
            .iter()
            .filter(|s| s.service_type == ServiceType::NodePort)
            .count(),
        host_network_pods
    );
    CheckResult::new(id.as_str(), id.title(), summary, findings)
}

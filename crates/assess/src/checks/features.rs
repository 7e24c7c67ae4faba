//! Features the cluster uses that the target network does not offer.

use super::{plural, CheckId};
use crate::context::Context;
use crate::inventory::{IpStack, Pod};
use crate::{CheckResult, Finding};
use std::collections::BTreeMap;
use unicni_capacity::capabilities;
use unicni_config::BackendKind;
use unicni_core::Capabilities;

/// The target's capabilities with what its config adds (unicni's eBPF policy engine
/// enforces NetworkPolicy on every backend and mode when `policy.enabled` is set).
fn target_capabilities(cx: &Context) -> Capabilities {
    let mut caps = capabilities::of(cx.target.backend().as_str(), cx.target.mode())
        .expect("targets are unicni backends");
    if cx.target.config.policy.enabled {
        caps.network_policy = true;
    }
    // unicni's flannel offers dual stack in vxlan and host-gw (the anchor's has none).
    if cx.target.backend() == BackendKind::Flannel && cx.target.mode() != "vpc-route" {
        caps.dual_stack = true;
    }
    caps
}

/// What a dual-stack cluster's IPv6 becomes on the target: where pods' IPv6 addresses
/// come from and what traffic leaving the cluster carries.
fn ipv6_carries_over(cx: &Context, to: &str) -> String {
    let c = &cx.target.config;
    let source = match cx.target.backend() {
        BackendKind::Flannel => format!(
            "flannel.ipv6_network {} (a /{} per node, at the index of the node's IPv4 subnet)",
            c.flannel.ipv6_network.as_deref().unwrap_or("(unset)"),
            c.flannel.ipv6_subnet_len
        ),
        BackendKind::Terway => "the IPv6 ranges of the configured vSwitches".to_string(),
    };
    let egress = match cx.target.backend() {
        BackendKind::Flannel => "leaves the cluster masqueraded to the node's IPv6 address",
        BackendKind::Terway => "leaves the cluster with the pod's own IPv6 address",
    };
    format!(
        "dual stack carries over to {to}: pods get IPv6 addresses from {source} (every pod's \
         IPv6 address changes), and pod IPv6 traffic {egress}"
    )
}

/// Pods grouped by their owner (or by themselves when they have none): one finding per
/// workload reads better than one per replica.
fn by_workload<'a>(pods: impl Iterator<Item = &'a Pod>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for p in pods {
        let key = match &p.owner {
            Some(o) => format!("{}/{}", p.namespace, o),
            None => format!("{}/pod/{}", p.namespace, p.name),
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

pub fn run(cx: &Context) -> CheckResult {
    let id = CheckId::LostFeatures;
    let tgt = target_capabilities(cx);
    let cur = capabilities::of(cx.current_backend(), cx.current_mode());
    let to = format!("{} ({})", tgt.backend, cx.target.mode());
    let inv = cx.inv;
    let mut findings = Vec::new();
    let mut lost: Vec<&str> = Vec::new();

    if !inv.network_policies.is_empty() && !tgt.network_policy {
        lost.push("NetworkPolicy");
        let remedy = match cx.target.backend() {
            BackendKind::Flannel => "set policy.enabled = true in the target config (unicni's eBPF policy engine), or accept that these policies stop being enforced",
            BackendKind::Terway => "set policy.enabled = true in the target config (unicni's eBPF policy engine, which also covers exclusive-ENI pods), or use terway.mode = \"shared-eni\"",
        };
        for np in &inv.network_policies {
            findings.push(Finding::blocker(
                format!("networkpolicy/{}/{}", np.namespace, np.name),
                format!("{to} does not enforce NetworkPolicy"),
                remedy,
            ));
        }
    }

    if !tgt.fixed_ip {
        let groups = by_workload(inv.pods.iter().filter(|p| p.fixed_ip));
        if !groups.is_empty() {
            lost.push("fixed pod IPs");
        }
        for (workload, n) in groups {
            findings.push(Finding::blocker(
                workload,
                format!("{} keep a fixed IP; {to} gives a pod a new address when it is re-created", plural(n, "pod", "pods")),
                "make clients find these pods by DNS or a Service instead of their address before migrating",
            ));
        }
    }

    let v6_pods = inv
        .pods
        .iter()
        .filter(|p| p.ips.iter().any(|ip| ip.is_ipv6()))
        .count() as u64;
    if inv.cluster.ip_stack != IpStack::Ipv4 || v6_pods > 0 {
        if !tgt.dual_stack {
            lost.push("IPv6 / dual stack");
            findings.push(Finding::blocker(
                "cluster",
                format!(
                    "the cluster is {:?} ({} with IPv6 addresses); {to} is IPv4 only",
                    inv.cluster.ip_stack,
                    plural(v6_pods, "pod", "pods")
                )
                .to_lowercase(),
                match cx.target.backend() {
                    BackendKind::Flannel => "use flannel.mode = \"vxlan\" or \"host-gw\" with cluster.ip_stack = \"dual\" (vpc-route routes IPv4 only), stay on terway, or remove the workloads' dependence on IPv6 first",
                    BackendKind::Terway => "stay on the current network, or remove the workloads' dependence on IPv6 first",
                },
            ));
        } else if cx.target.config.cluster.ip_stack == unicni_config::IpStack::Ipv4 {
            findings.push(Finding::blocker(
                "target",
                format!("the cluster uses IPv6 but the target config sets cluster.ip_stack = \"ipv4\" ({})", cx.target.source),
                "set cluster.ip_stack = \"dual\" in the target config",
            ));
        } else {
            findings.push(Finding::info("cluster", ipv6_carries_over(cx, &to)));
        }
    }

    if !tgt.per_pod_vswitch {
        let mut groups: BTreeMap<&str, u64> = BTreeMap::new();
        for p in inv.pods.iter() {
            if let Some(pn) = &p.pod_networking {
                *groups.entry(pn.as_str()).or_default() += 1;
            }
        }
        if !groups.is_empty() {
            lost.push("pod-level vSwitch / security group");
        }
        for (pn, n) in groups {
            findings.push(Finding::blocker(
                format!("podnetworking/{pn}"),
                format!("{} select their own vSwitch or security group; {to} has no per-pod network selection", plural(n, "pod", "pods")),
                "move the isolation these pods rely on into NetworkPolicy or separate node pools",
            ));
        }
    }

    if !tgt.lb_to_pod_direct {
        for s in inv.services.iter().filter(|s| s.lb_to_pod) {
            findings.push(Finding::warning(
                format!("service/{}/{}", s.namespace, s.name),
                format!("its load balancer targets pod addresses directly; on {to} it goes through NodePort, and sessions no longer follow a pod that moves"),
                "expect one more hop; use externalTrafficPolicy Local where the client address matters",
            ));
        }
    }

    if let Some(cur) = &cur {
        let pods = cx.pod_network_pods();
        if cur.preserves_source_ip && !tgt.preserves_source_ip && pods > 0 {
            findings.push(Finding::warning(
                "cluster",
                format!("traffic leaving the cluster from its {} will carry the node's address (masquerade) instead of the pod's own", plural(pods, "pod", "pods")),
                "update allow-lists of databases, firewalls and partner APIs that key on pod addresses or vSwitch ranges",
            ));
        } else if !cur.preserves_source_ip && tgt.preserves_source_ip && pods > 0 {
            findings.push(Finding::info(
                "cluster",
                format!("traffic leaving the cluster from its {} will carry the pod's own address instead of the node's: allow-lists keyed on node addresses must include the target vSwitch ranges", plural(pods, "pod", "pods")),
            ));
        }
        if cur.cross_cluster_in_vpc
            && !tgt.cross_cluster_in_vpc
            && !inv.cluster.other_cluster_cidrs.is_empty()
        {
            lost.push("direct pod traffic with other clusters in the VPC");
            findings.push(Finding::warning(
                "cluster",
                format!("pods of other clusters in the VPC reach these pods directly today; on {to} they cannot"),
                "expose what other clusters call through Services of type LoadBalancer",
            ));
        }
        if cur.pod_cidr_can_grow && !tgt.pod_cidr_can_grow {
            findings.push(Finding::info(
                "cluster",
                format!("on {to} the pod address range is fixed when the cluster is created and never grows"),
            ));
        }
    }

    let egress_changes = cur
        .as_ref()
        .is_some_and(|c| c.preserves_source_ip != tgt.preserves_source_ip)
        && cx.pod_network_pods() > 0;
    let mut summary = if lost.is_empty() {
        "no feature in use is lost".to_string()
    } else {
        format!("lost: {}", lost.join(", "))
    };
    if egress_changes {
        summary.push_str("; egress source address changes");
    }
    CheckResult::new(id.as_str(), id.title(), summary, findings)
}

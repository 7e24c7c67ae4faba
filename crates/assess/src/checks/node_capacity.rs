//! Per node: do the pods running there now fit the target's per-node limit?

use super::{plural, CheckId};
use crate::context::Context;
use crate::{CheckResult, Finding};
use unicni_capacity::flannel;
use unicni_capacity::prefix::KUBELET_MAX_PODS_DEFAULT;
use unicni_config::{BackendKind, IpStack, TerwayMode};

/// At or above this share of the limit a node has too little room to absorb a drain.
const HEADROOM_PERCENT: u64 = 90;

pub fn run(cx: &Context) -> CheckResult {
    let id = CheckId::NodeCapacity;
    let cfg = &cx.target.config;
    let exclusive = cfg.terway.mode == TerwayMode::ExclusiveEni;
    // Prefix mode (shared-ENI only): the /28 prefixes' addresses, capped by the kubelet's
    // default maxPods.
    let prefix = cfg.terway.ip_prefix && !exclusive;
    let dual = cfg.cluster.ip_stack == IpStack::Dual;
    let mode = cx.target.mode();
    // Terway shared-ENI nodes short of room that prefix mode would fit.
    let mut prefix_would_fit = 0u64;
    let mut findings = Vec::new();
    let (mut fit, mut unknown) = (0u64, 0u64);
    for node in &cx.inv.nodes {
        let load = cx.load_of(&node.name);
        let object = format!("node/{}", node.name);
        let limit = match cx.target.backend() {
            BackendKind::Flannel => flannel::pods_per_node(cfg.flannel.subnet_len),
            BackendKind::Terway => {
                let Some(t) = node.instance_type.as_deref() else {
                    unknown += 1;
                    findings.push(Finding::warning(
                        &object,
                        "the node's instance type is unknown, so its terway capacity is too",
                        "add `instance_type` to the node in the inventory",
                    ));
                    continue;
                };
                let Some(l) = cx.table.get(t) else {
                    unknown += 1;
                    findings.push(Finding::warning(
                        &object,
                        format!("instance type {t} is not in the {}", cx.table.describe()),
                        "pass --instance-types FILE with its ENI limits",
                    ));
                    continue;
                };
                let with_prefix = l.prefix_capacity(KUBELET_MAX_PODS_DEFAULT, dual).pods;
                if prefix {
                    with_prefix
                } else if !exclusive && !l.shared_admitted() {
                    findings.push(Finding::blocker(
                        &object,
                        format!(
                            "{t} holds {} pods in shared-ENI mode, not more than 11: the \
                             platform does not admit it as a terway node",
                            l.shared_pods()
                        ),
                        "move this node pool to a larger instance type",
                    ));
                    continue;
                } else {
                    let limit = l.pods_in_mode(exclusive);
                    let now = load.pod_network;
                    if !exclusive && now * 100 >= limit * HEADROOM_PERCENT && now < with_prefix {
                        prefix_would_fit += 1;
                    }
                    limit
                }
            }
        };
        let now = load.pod_network;
        if now > limit {
            findings.push(Finding::blocker(
                &object,
                format!(
                    "{} use the pod network here now; the target ({mode}) gives this node {limit}",
                    plural(now, "pod", "pods")
                ),
                match cx.target.backend() {
                    BackendKind::Terway => "use a larger instance type (more ENIs or addresses per ENI) or more nodes for these pods",
                    BackendKind::Flannel => "choose a shorter flannel.subnet_len (a larger node subnet) or spread the pods over more nodes",
                },
            ));
        } else if limit > 0 && now * 100 >= limit * HEADROOM_PERCENT {
            findings.push(Finding::warning(
                &object,
                format!("{now} of the {limit} pods the target allows here: little headroom"),
                "plan a few more nodes so that a drained node's pods fit elsewhere",
            ));
        } else {
            fit += 1;
        }
    }
    let summary = format!(
        "{} of {} fit the target's per-node limit with headroom{}",
        fit,
        plural(cx.inv.nodes.len() as u64, "node", "nodes"),
        if unknown > 0 {
            format!(", {unknown} unknown")
        } else {
            String::new()
        }
    );
    if findings.is_empty() && !cx.inv.nodes.is_empty() {
        findings.push(Finding::info("cluster", summary.clone()));
    }
    if prefix_would_fit > 0 {
        findings.push(Finding::info(
            "cluster",
            format!(
                "{} at or near the shared-ENI limit would fit with terway.ip_prefix = true \
                 (/28 prefixes: (ENIs - 1) x (IPv4 per ENI - 1) x 16 addresses, pods capped \
                 by the kubelet's maxPods, {KUBELET_MAX_PODS_DEFAULT} by default); the choice \
                 is fixed at bootstrap",
                plural(prefix_would_fit, "node", "nodes")
            ),
        ));
    }
    CheckResult::new(id.as_str(), id.title(), summary, findings)
}

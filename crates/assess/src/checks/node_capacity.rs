//! Per node: do the pods running there now fit the target's per-node limit?

use super::{plural, CheckId};
use crate::context::Context;
use crate::{CheckResult, Finding};
use unicni_capacity::flannel;
use unicni_config::{BackendKind, TerwayMode};

/// At or above this share of the limit a node has too little room to absorb a drain.
const HEADROOM_PERCENT: u64 = 90;

pub fn run(cx: &Context) -> CheckResult {
    let id = CheckId::NodeCapacity;
    let cfg = &cx.target.config;
    let exclusive = cfg.terway.mode == TerwayMode::ExclusiveEni;
    let mode = cx.target.mode();
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
                if !exclusive && !l.shared_admitted() {
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
                }
                l.pods_in_mode(exclusive)
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
    CheckResult::new(id.as_str(), id.title(), summary, findings)
}

//! Pods that are not running: a migration should start from a healthy cluster.

use super::{plural, CheckId};
use crate::context::Context;
use crate::inventory::PodPhase;
use crate::{CheckResult, Finding};
use std::collections::BTreeMap;

pub fn run(cx: &Context) -> CheckResult {
    let id = CheckId::PodsNotRunning;
    // Grouped by workload, phase and reason: a crash-looping Deployment is one finding.
    let mut groups: BTreeMap<(String, PodPhase, &str), u64> = BTreeMap::new();
    for p in &cx.inv.pods {
        if matches!(p.phase, PodPhase::Running | PodPhase::Succeeded) {
            continue;
        }
        let workload = match &p.owner {
            Some(o) => format!("{}/{}", p.namespace, o),
            None => format!("pod/{}/{}", p.namespace, p.name),
        };
        let reason = p.reason.as_deref().unwrap_or("");
        *groups.entry((workload, p.phase, reason)).or_default() += 1;
    }
    let total: u64 = groups.values().sum();
    let findings = groups
        .into_iter()
        .map(|((workload, phase, reason), n)| {
            let why = if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            };
            Finding::warning(
                workload,
                format!("{} {phase:?}{why}", plural(n, "pod is", "pods are")),
                "fix or delete them first, so that problems after the migration are not confused with these",
            )
        })
        .collect();
    let summary = format!("{} not running", plural(total, "pod", "pods"));
    CheckResult::new(id.as_str(), id.title(), summary, findings)
}

//! Which network the cluster runs now, and whether this is a migration at all.

use super::CheckId;
use crate::context::Context;
use crate::{CheckResult, Finding};

pub fn run(cx: &Context) -> CheckResult {
    let id = CheckId::CurrentBackend;
    let (from, from_mode) = (cx.current_backend(), cx.current_mode());
    let (to, to_mode) = (cx.target.backend().as_str(), cx.target.mode());
    let mut findings = vec![Finding::info(
        "cluster",
        format!(
            "the cluster runs {from} ({from_mode}); the target is {to} ({to_mode}), from {}",
            cx.target.source
        ),
    )];
    let summary;
    if from == to && from_mode == to_mode {
        summary = format!("already {to} ({to_mode}): nothing to migrate");
        findings.push(Finding::info("cluster", summary.clone()));
    } else if from == to {
        summary = format!("{from} mode change {from_mode} -> {to_mode}");
        findings.push(Finding::info(
            "cluster",
            format!(
                "the {from} mode is fixed when a cluster is created: changing {from_mode} to \
                 {to_mode} is a migration like a backend change"
            ),
        ));
    } else if unicni_capacity::capabilities::of(from, from_mode).is_none() {
        summary = format!("{from} -> {to}: {from} is not a unicni backend");
        findings.push(Finding::warning(
            "cluster",
            format!(
                "the current network plugin {from:?} is not one unicni knows; comparisons of \
                 features and capacity assume nothing about it"
            ),
            "check the lost-features findings by hand against that plugin's documentation",
        ));
    } else {
        summary = format!("{from} ({from_mode}) -> {to} ({to_mode})");
    }
    if cx.target.assumed {
        findings.push(Finding::info(
            "target",
            "no target config was given: unicni's defaults adapted to the inventory are assessed",
        ));
    }
    CheckResult::new(id.as_str(), id.title(), summary, findings)
}

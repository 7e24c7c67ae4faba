//! Address ranges that would collide once the target network exists in this VPC.

use super::CheckId;
use crate::context::Context;
use crate::suggest;
use crate::{CheckResult, Finding};
use ipnet::{IpNet, Ipv4Net};
use unicni_capacity::limits::PRIVATE_V4;
use unicni_config::BackendKind;

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

pub fn run(cx: &Context) -> CheckResult {
    let id = CheckId::CidrConflicts;
    let inv = cx.inv;
    let cfg = &cx.target.config;
    let mut findings = Vec::new();
    let service = cfg.cluster.service_cidrs();
    // Everything already routed in the VPC, with a name for messages.
    let mut in_use: Vec<(String, IpNet)> = Vec::new();
    if let Some(v) = inv.cluster.vpc_cidr {
        in_use.push((format!("the VPC {v}"), v));
    }
    for s in &service {
        in_use.push((format!("the service CIDR {s}"), *s));
    }
    for (i, o) in inv.cluster.other_cluster_cidrs.iter().enumerate() {
        in_use.push((format!("other cluster range #{} {o}", i + 1), *o));
    }
    match cx.target.backend() {
        BackendKind::Flannel => {
            for v in &inv.cloud.vswitches {
                in_use.push((format!("vSwitch {} {}", v.id, v.cidr), v.cidr));
            }
            if let Some(c) = inv.cluster.network.cluster_cidr {
                in_use.push((format!("the current cluster network {c}"), c));
            }
            let Ok(net) = cfg.flannel.network.parse::<IpNet>() else {
                return CheckResult::new(
                    id.as_str(),
                    id.title(),
                    "target flannel.network unreadable",
                    vec![Finding::blocker(
                        "target",
                        format!("flannel.network = {:?} is not a CIDR", cfg.flannel.network),
                        "set flannel.network to a private CIDR",
                    )],
                );
            };
            let private = match net {
                IpNet::V4(v4) => PRIVATE_V4
                    .iter()
                    .any(|p| p.parse::<Ipv4Net>().expect("constant").contains(&v4)),
                IpNet::V6(_) => false,
            };
            if !private {
                findings.push(Finding::blocker(
                    format!("network/{net}"),
                    "the cluster network must sit in 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
                    "choose flannel.network inside a private range",
                ));
            }
            let avoid: Vec<IpNet> = in_use.iter().map(|(_, n)| *n).collect();
            let suggestion = suggest::free_network(net.prefix_len(), &avoid)
                .map(|s| format!("use flannel.network = \"{s}\", which overlaps nothing known"))
                .unwrap_or_else(|| "choose a private range that overlaps none of them".into());
            for (what, other) in &in_use {
                if overlaps(&net, other) {
                    findings.push(Finding::blocker(
                        format!("network/{net}"),
                        format!("the target cluster network overlaps {what}"),
                        suggestion.clone(),
                    ));
                }
            }
            if findings.is_empty() {
                findings.push(Finding::info(
                    format!("network/{net}"),
                    format!(
                        "the target cluster network overlaps none of {} known ranges",
                        in_use.len()
                    ),
                ));
            }
        }
        BackendKind::Terway => {
            if let Some(c) = inv.cluster.network.cluster_cidr {
                in_use.push((format!("the current cluster network {c}"), c));
            }
            let vpc = inv.cluster.vpc_cidr;
            for vid in &cfg.terway.vswitches {
                let Some(v) = inv.cloud.vswitches.iter().find(|v| &v.id == vid) else {
                    continue;
                };
                let object = format!("vswitch/{}", v.id);
                if let Some(vpc) = vpc {
                    if !vpc.contains(&v.cidr) {
                        findings.push(Finding::blocker(
                            &object,
                            format!("{} is not inside the VPC {vpc}", v.cidr),
                            "use vSwitches of the cluster's VPC",
                        ));
                    }
                }
                for (what, other) in in_use.iter().filter(|(w, _)| !w.starts_with("the VPC")) {
                    if overlaps(&v.cidr, other) {
                        findings.push(Finding::blocker(
                            &object,
                            format!(
                                "pod addresses would come from {}, which overlaps {what}",
                                v.cidr
                            ),
                            "use a vSwitch whose range overlaps no cluster or service range",
                        ));
                    }
                }
            }
            for (s, v) in service.iter().filter_map(|s| vpc.map(|v| (s, v))) {
                if overlaps(s, &v) {
                    findings.push(Finding::blocker(
                        "target",
                        format!("cluster.service_cidr {s} overlaps the VPC {v}: pods would not reach VPC addresses in it"),
                        "choose a service CIDR outside the VPC",
                    ));
                }
            }
            if findings.is_empty() {
                findings.push(Finding::info(
                    "cluster",
                    format!(
                        "the target vSwitches overlap none of {} known ranges",
                        in_use.len()
                    ),
                ));
            }
        }
    }
    let blockers = findings
        .iter()
        .filter(|f| f.severity == crate::Severity::Blocker)
        .count();
    let summary = if blockers == 0 {
        "no overlap".to_string()
    } else {
        format!("{blockers} overlapping or misplaced ranges")
    };
    CheckResult::new(id.as_str(), id.title(), summary, findings)
}

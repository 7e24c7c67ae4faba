//! Flannel target: enough node subnets in the cluster network, which can never grow.

use super::CheckId;
use crate::context::Context;
use crate::{CheckResult, Finding};
use ipnet::IpNet;
use unicni_capacity::flannel::node_subnets;
use unicni_capacity::limits::NODE_SUBNET_LEN_RANGE;
use unicni_capacity::plan::thousands;
use unicni_config::BackendKind;

pub fn run(cx: &Context) -> CheckResult {
    let id = CheckId::FlannelSubnets;
    if cx.target.backend() != BackendKind::Flannel {
        return CheckResult::skipped(id.as_str(), id.title(), "the target is not flannel");
    }
    let f = &cx.target.config.flannel;
    let Ok(IpNet::V4(net)) = f.network.parse::<IpNet>() else {
        return CheckResult::new(
            id.as_str(),
            id.title(),
            "no IPv4 cluster network",
            vec![Finding::blocker(
                "target",
                format!("flannel.network = {:?} is not an IPv4 CIDR", f.network),
                "set flannel.network to a private IPv4 CIDR",
            )],
        );
    };
    let subnets = node_subnets(net, f.subnet_len);
    let nodes = cx.inv.nodes.len() as u64;
    let mut findings = Vec::new();
    let object = format!("network/{net}");
    let arithmetic = format!(
        "{net} in /{} node subnets: 2^({} - {}) = {} subnets",
        f.subnet_len,
        f.subnet_len,
        net.prefix_len(),
        thousands(subnets)
    );
    if nodes > subnets {
        findings.push(Finding::blocker(
            &object,
            format!("{arithmetic}, fewer than the {} nodes", thousands(nodes)),
            "choose a wider flannel.network or a longer flannel.subnet_len (fewer pods per node)",
        ));
    } else if nodes + nodes / 5 > subnets {
        findings.push(Finding::warning(
            &object,
            format!("{arithmetic} for {} nodes: less than 20% to grow, and the network is fixed for the life of the cluster", thousands(nodes)),
            "choose a wider flannel.network now",
        ));
    } else {
        findings.push(Finding::info(
            &object,
            format!("{arithmetic} for {} nodes", thousands(nodes)),
        ));
    }
    if !NODE_SUBNET_LEN_RANGE.contains(&f.subnet_len) {
        findings.push(Finding::warning(
            "target",
            format!(
                "flannel.subnet_len = {} is outside the /{}-/{} the platform offers",
                f.subnet_len,
                NODE_SUBNET_LEN_RANGE.start(),
                NODE_SUBNET_LEN_RANGE.end()
            ),
            "use a node subnet length between 24 and 28",
        ));
    }
    let summary = format!(
        "{} subnets for {} nodes",
        thousands(subnets),
        thousands(nodes)
    );
    CheckResult::new(id.as_str(), id.title(), summary, findings)
}

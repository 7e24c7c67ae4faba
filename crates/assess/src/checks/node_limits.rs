//! The node count against the cluster size limit and, in vpc-route mode, the route table.

use super::CheckId;
use crate::context::Context;
use crate::{CheckResult, Finding};
use unicni_capacity::limits::{
    CLUSTER_NODES_DEFAULT, CLUSTER_NODES_MAX, ROUTE_TABLE_QUOTA_DEFAULT, ROUTE_TABLE_QUOTA_MAX,
};
use unicni_capacity::plan::thousands;
use unicni_config::{BackendKind, FlannelMode};

/// Using more than this share of a budget leaves too little room to grow.
const BUDGET_WARN_PERCENT: u64 = 80;

pub fn run(cx: &Context) -> CheckResult {
    let id = CheckId::NodeLimits;
    let nodes = cx.inv.nodes.len() as u64;
    let mut findings = Vec::new();
    let limit = cx.inv.cluster.node_limit.unwrap_or(CLUSTER_NODES_DEFAULT);
    if nodes > CLUSTER_NODES_MAX {
        findings.push(Finding::blocker(
            "cluster",
            format!(
                "{} nodes exceed the platform maximum of {} nodes per cluster",
                thousands(nodes),
                thousands(CLUSTER_NODES_MAX)
            ),
            "split the workloads over two clusters",
        ));
    } else if nodes > limit {
        findings.push(Finding::warning(
            "cluster",
            format!(
                "{} nodes exceed the cluster size limit of {}",
                thousands(nodes),
                thousands(limit)
            ),
            format!(
                "request a node quota increase (up to {}) for the new cluster before migrating",
                thousands(CLUSTER_NODES_MAX)
            ),
        ));
    } else {
        findings.push(Finding::info(
            "cluster",
            format!(
                "{} nodes within the cluster size limit of {}",
                thousands(nodes),
                thousands(limit)
            ),
        ));
    }
    let mut summary = format!(
        "{} nodes, cluster limit {}",
        thousands(nodes),
        thousands(limit)
    );
    let cfg = &cx.target.config;
    if cx.target.backend() == BackendKind::Flannel && cfg.flannel.mode == FlannelMode::VpcRoute {
        let rt = cx.inv.cloud.route_table.as_ref();
        let quota = rt
            .map(|r| r.quota)
            .or(cfg.cloud.route_table_quota)
            .unwrap_or(ROUTE_TABLE_QUOTA_DEFAULT);
        let used = rt.map(|r| r.entries_used).unwrap_or(0);
        let free = quota.saturating_sub(used);
        summary = format!(
            "{summary}; route table: {} of {} entries free",
            thousands(free),
            thousands(quota)
        );
        let object = "route-table";
        if nodes + used > ROUTE_TABLE_QUOTA_MAX {
            findings.push(Finding::blocker(
                object,
                format!("vpc-route needs one route entry per node: {} nodes plus {} entries in use exceed the {} entries a route table can ever have", thousands(nodes), thousands(used), thousands(ROUTE_TABLE_QUOTA_MAX)),
                "use flannel.mode = \"vxlan\" or \"host-gw\", or terway",
            ));
        } else if nodes > free {
            findings.push(Finding::blocker(
                object,
                format!("vpc-route needs one route entry per node: {} nodes, {} entries free (quota {}, {} used)", thousands(nodes), thousands(free), thousands(quota), thousands(used)),
                format!("raise the route-table quota to at least {} (at most {}) before migrating", thousands(nodes + used), thousands(ROUTE_TABLE_QUOTA_MAX)),
            ));
        } else if (nodes + used) * 100 > quota * BUDGET_WARN_PERCENT {
            findings.push(Finding::warning(
                object,
                format!("{} nodes and {} other entries use more than {BUDGET_WARN_PERCENT}% of the route-table quota of {}", thousands(nodes), thousands(used), thousands(quota)),
                "raise the quota now: the cluster cannot add nodes past it",
            ));
        } else {
            findings.push(Finding::info(
                object,
                format!(
                    "{} of {} route entries free for {} nodes",
                    thousands(free),
                    thousands(quota),
                    thousands(nodes)
                ),
            ));
        }
    }
    CheckResult::new(id.as_str(), id.title(), summary, findings)
}

//! The ordered migration path: new cluster all at once, or node pool by node pool.
//!
//! The network choice is locked for the life of a cluster (the lock refuses any change of
//! backend or mode), so both strategies build a new cluster in the same VPC. They differ
//! in whether workloads can move gradually while the two clusters talk to each other,
//! which needs pod addresses routable in the VPC on both sides.

use crate::context::Context;
use crate::{CheckResult, Severity, Status};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use unicni_config::{BackendKind, FlannelMode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Already on the target.
    None,
    NodePoolByNodePool,
    NewCluster,
}

impl Strategy {
    pub fn as_str(&self) -> &'static str {
        match self {
            Strategy::None => "none",
            Strategy::NodePoolByNodePool => "node-pool-by-node-pool",
            Strategy::NewCluster => "new-cluster",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub order: u32,
    pub action: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationPath {
    pub strategy: Strategy,
    pub reason: String,
    pub steps: Vec<Step>,
}

/// Whether pods of a network in this mode are reachable from elsewhere in the VPC.
fn routable_in_vpc(backend: &str, mode: &str) -> bool {
    backend == "terway" || (backend == "flannel" && mode == "vpc-route")
}

/// Pools listed one step each up to this many; the rest share one step.
const POOL_STEPS: usize = 50;

#[derive(Default)]
struct Pool {
    nodes: u64,
    pods: u64,
    stateful: u64,
}

pub fn plan(cx: &Context, checks: &[CheckResult]) -> MigrationPath {
    let (from, from_mode) = (cx.current_backend(), cx.current_mode());
    let to = cx.target.backend().as_str();
    let to_mode = cx.target.mode();
    if from == to && from_mode == to_mode {
        return MigrationPath {
            strategy: Strategy::None,
            reason: format!("the cluster already runs {to} ({to_mode})"),
            steps: Vec::new(),
        };
    }
    let blocked: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Blocker)
        .map(|c| c.id.as_str())
        .collect();
    let cidr_blocked = blocked.contains(&"cidr-conflicts");
    let both_routable = routable_in_vpc(from, from_mode) && routable_in_vpc(to, to_mode);
    let (strategy, reason) = if both_routable && !cidr_blocked {
        (
            Strategy::NodePoolByNodePool,
            format!(
                "pods of {from} ({from_mode}) and of {to} ({to_mode}) both have addresses the VPC routes, so \
                 workloads in the old and the new cluster reach each other while pools move one at a time"
            ),
        )
    } else if !both_routable {
        let unroutable = if routable_in_vpc(from, from_mode) {
            format!("{to} ({to_mode})")
        } else {
            format!("{from} ({from_mode})")
        };
        (
            Strategy::NewCluster,
            format!(
                "pods of {unroutable} are not reachable from outside their cluster, so the two clusters cannot \
                 share workloads during a gradual move: build the new cluster, move everything, then switch traffic"
            ),
        )
    } else {
        (
            Strategy::NewCluster,
            "the address ranges conflict, so the two clusters cannot run side by side in the VPC: fix the ranges \
             or move everything at once"
                .into(),
        )
    };

    let mut steps: Vec<(String, String)> = Vec::new();
    if !blocked.is_empty() {
        let n: usize = checks.iter().map(|c| c.count(Severity::Blocker)).sum();
        steps.push((
            "resolve-blockers".into(),
            format!(
                "resolve the {n} blocker findings of: {}",
                blocked.join(", ")
            ),
        ));
    }
    steps.push((
        "plan".into(),
        format!(
            "write the target config ({to}, {to_mode}) and check its capacity with `unicni plan --config FILE`"
        ),
    ));
    let extra = match (cx.target.backend(), cx.target.config.flannel.mode) {
        (BackendKind::Flannel, FlannelMode::VpcRoute) => {
            "; make sure the route table has one free entry per node"
        }
        (BackendKind::Terway, _) => {
            "; make sure every zone with nodes has a vSwitch with free addresses"
        }
        _ => "",
    };
    steps.push((
        "create-cluster".into(),
        format!(
            "create a new cluster in the same VPC with backend {to} ({to_mode}): the network of a cluster is \
             locked when it is created and cannot change in place{extra}"
        ),
    ));

    match strategy {
        Strategy::NodePoolByNodePool => {
            let mut pools: BTreeMap<&str, Pool> = BTreeMap::new();
            let node_pool: HashMap<&str, &str> = cx
                .inv
                .nodes
                .iter()
                .map(|n| (n.name.as_str(), n.pool.as_deref().unwrap_or("default")))
                .collect();
            for n in &cx.inv.nodes {
                pools
                    .entry(n.pool.as_deref().unwrap_or("default"))
                    .or_default()
                    .nodes += 1;
            }
            for p in cx.inv.pods.iter().filter(|p| p.uses_pod_network()) {
                let Some(pool) = p.node.as_deref().and_then(|n| node_pool.get(n)) else {
                    continue;
                };
                let entry = pools.entry(pool).or_default();
                entry.pods += 1;
                if p.fixed_ip
                    || p.owner
                        .as_deref()
                        .is_some_and(|o| o.starts_with("StatefulSet/"))
                {
                    entry.stateful += 1;
                }
            }
            // Stateless and small pools first: they prove the path at the least risk.
            let mut order: Vec<(&str, Pool)> = pools.into_iter().collect();
            order.sort_by_key(|(name, p)| (p.stateful > 0, p.pods, name.to_string()));
            let total = order.len();
            for (i, (name, p)) in order.iter().enumerate() {
                if i == POOL_STEPS {
                    steps.push((
                        "move-pools".into(),
                        format!(
                            "move the remaining {} pools the same way, stateful ones last",
                            total - POOL_STEPS
                        ),
                    ));
                    break;
                }
                let stateful = if p.stateful > 0 {
                    format!(
                        ", {} stateful pods: move their data and keep clients on DNS names",
                        p.stateful
                    )
                } else {
                    String::new()
                };
                steps.push((
                    "move-pool".into(),
                    format!(
                        "pool {name} ({} nodes, {} pods{stateful}): add its capacity to the new cluster, deploy its \
                         workloads there, then cordon, drain and remove the old nodes",
                        p.nodes, p.pods
                    ),
                ));
            }
        }
        _ => {
            steps.push((
                "deploy-workloads".into(),
                "deploy every workload to the new cluster: stateless first, then stateful ones with their data".into(),
            ));
            steps.push((
                "verify".into(),
                "run the workloads' own checks in the new cluster before it takes traffic".into(),
            ));
        }
    }
    steps.push((
        "switch-traffic".into(),
        "point DNS records and load balancers at the new cluster; keep the old one until traffic has drained".into(),
    ));
    let release = match from {
        "terway" => "; this releases its ENIs and vSwitch addresses",
        "flannel" if from_mode == "vpc-route" => "; this releases its route-table entries",
        _ => "",
    };
    steps.push((
        "decommission".into(),
        format!("delete the old cluster{release}"),
    ));
    MigrationPath {
        strategy,
        reason,
        steps: steps
            .into_iter()
            .enumerate()
            .map(|(i, (action, detail))| Step {
                order: i as u32 + 1,
                action,
                detail,
            })
            .collect(),
    }
}

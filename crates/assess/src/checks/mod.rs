//! The checks, one module each. Every check returns one [`CheckResult`].

mod cidr;
mod current;
mod features;
mod flannel_subnets;
mod host;
mod node_capacity;
mod node_limits;
mod pods;
mod vswitch;

use crate::context::Context;
use crate::{AssessError, CheckResult};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The checks, by their stable IDs (used by `--ignore` and in the JSON report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckId {
    CurrentBackend,
    NodeCapacity,
    LostFeatures,
    VswitchIps,
    CidrConflicts,
    NodeLimits,
    FlannelSubnets,
    HostDependencies,
    PodsNotRunning,
}

impl CheckId {
    pub const ALL: [CheckId; 9] = [
        CheckId::CurrentBackend,
        CheckId::NodeCapacity,
        CheckId::LostFeatures,
        CheckId::VswitchIps,
        CheckId::CidrConflicts,
        CheckId::NodeLimits,
        CheckId::FlannelSubnets,
        CheckId::HostDependencies,
        CheckId::PodsNotRunning,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            CheckId::CurrentBackend => "current-backend",
            CheckId::NodeCapacity => "node-capacity",
            CheckId::LostFeatures => "lost-features",
            CheckId::VswitchIps => "vswitch-ips",
            CheckId::CidrConflicts => "cidr-conflicts",
            CheckId::NodeLimits => "node-limits",
            CheckId::FlannelSubnets => "flannel-subnets",
            CheckId::HostDependencies => "host-dependencies",
            CheckId::PodsNotRunning => "pods-not-running",
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            CheckId::CurrentBackend => "current backend and mode",
            CheckId::NodeCapacity => "pods per node on the target",
            CheckId::LostFeatures => "features in use the target lacks",
            CheckId::VswitchIps => "vSwitch free addresses per zone",
            CheckId::CidrConflicts => "address range conflicts",
            CheckId::NodeLimits => "route-table budget and node-count limits",
            CheckId::FlannelSubnets => "flannel node subnet arithmetic",
            CheckId::HostDependencies => "NodePort, hostPort and hostNetwork dependencies",
            CheckId::PodsNotRunning => "pods not running",
        }
    }

    fn run(&self, cx: &Context) -> CheckResult {
        match self {
            CheckId::CurrentBackend => current::run(cx),
            CheckId::NodeCapacity => node_capacity::run(cx),
            CheckId::LostFeatures => features::run(cx),
            CheckId::VswitchIps => vswitch::run(cx),
            CheckId::CidrConflicts => cidr::run(cx),
            CheckId::NodeLimits => node_limits::run(cx),
            CheckId::FlannelSubnets => flannel_subnets::run(cx),
            CheckId::HostDependencies => host::run(cx),
            CheckId::PodsNotRunning => pods::run(cx),
        }
    }

    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CheckId {
    type Err = AssessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| AssessError::UnknownCheck(s.to_string(), Self::names()))
    }
}

/// Runs every check not in `ignore`, in the order of [`CheckId::ALL`].
pub fn run_all(cx: &Context, ignore: &[CheckId]) -> Vec<CheckResult> {
    CheckId::ALL
        .iter()
        .filter(|c| !ignore.contains(c))
        .map(|c| c.run(cx))
        .collect()
}

/// `n thing` / `n things`.
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

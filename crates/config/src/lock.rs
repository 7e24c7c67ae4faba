//! The cluster lock: the immutable part of the config, recorded at first install.
//!
//! Immutable: backend kind and mode, cluster CIDR, service CIDR, node subnet length, IP
//! stack, terway prefix mode. Append-only: terway vSwitches (adding grows the pod address space, removing
//! would strand pods). Everything else is mutable and not recorded.

use crate::{BackendKind, Config};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    pub cluster: String,
    pub backend: String,
    pub mode: String,
    pub cluster_cidr: Option<String>,
    pub service_cidr: String,
    pub node_subnet_len: Option<u8>,
    /// Flannel dual stack: the IPv6 cluster network and node subnet length. Absent in
    /// records of IPv4 clusters (and of versions before dual-stack flannel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_cluster_cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_node_subnet_len: Option<u8>,
    pub ip_stack: String,
    #[serde(default)]
    pub vswitches: Vec<String>,
    /// Terway prefix mode. Absent (false) in records of versions before prefix mode.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ip_prefix: bool,
    /// unicni version that wrote the record first.
    pub created_by: String,
    /// Seconds since the epoch when the record was first written.
    pub created_at: u64,
}

/// One refused change: the field, its locked value and the value now asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub field: String,
    pub old: String,
    pub new: String,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: locked {:?}, config now {:?}",
            self.field, self.old, self.new
        )
    }
}

impl LockRecord {
    pub fn from_config(c: &Config, version: &str, now: u64) -> LockRecord {
        let (mode, cluster_cidr, subnet_len) = match c.backend.kind {
            BackendKind::Flannel => (
                c.flannel.mode.as_str().to_string(),
                Some(c.flannel.network.clone()),
                Some(c.flannel.subnet_len),
            ),
            BackendKind::Terway => (c.terway.mode.as_str().to_string(), None, None),
        };
        let ipv6 = match c.backend.kind {
            BackendKind::Flannel => c
                .flannel
                .ipv6_network
                .clone()
                .map(|n| (n, c.flannel.ipv6_subnet_len)),
            BackendKind::Terway => None,
        };
        LockRecord {
            cluster: c.cluster.name.clone(),
            backend: c.backend.kind.as_str().to_string(),
            mode,
            cluster_cidr,
            service_cidr: c.cluster.service_cidr.clone(),
            node_subnet_len: subnet_len,
            ipv6_cluster_cidr: ipv6.as_ref().map(|(n, _)| n.clone()),
            ipv6_node_subnet_len: ipv6.map(|(_, l)| l),
            ip_stack: c.cluster.ip_stack.as_str().to_string(),
            vswitches: if c.backend.kind == BackendKind::Terway {
                c.terway.vswitches.clone()
            } else {
                Vec::new()
            },
            ip_prefix: c.backend.kind == BackendKind::Terway && c.terway.ip_prefix,
            created_by: version.to_string(),
            created_at: now,
        }
    }

    /// Every way `wanted` departs from this lock that is not allowed. Empty means the
    /// config may proceed; see [`LockRecord::merged`] for the record to store then.
    pub fn drift(&self, wanted: &LockRecord) -> Vec<Drift> {
        let mut out = Vec::new();
        let mut cmp = |field: &str, old: String, new: String| {
            if old != new {
                out.push(Drift {
                    field: field.into(),
                    old,
                    new,
                });
            }
        };
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        let optn = |v: &Option<u8>| v.map(|n| n.to_string()).unwrap_or_else(|| "(none)".into());
        cmp("backend.kind", self.backend.clone(), wanted.backend.clone());
        let mode_key = if self.backend == "terway" {
            "terway.mode"
        } else {
            "flannel.mode"
        };
        cmp(mode_key, self.mode.clone(), wanted.mode.clone());
        cmp(
            "flannel.network",
            opt(&self.cluster_cidr),
            opt(&wanted.cluster_cidr),
        );
        cmp(
            "cluster.service_cidr",
            self.service_cidr.clone(),
            wanted.service_cidr.clone(),
        );
        cmp(
            "flannel.subnet_len",
            optn(&self.node_subnet_len),
            optn(&wanted.node_subnet_len),
        );
        cmp(
            "cluster.ip_stack",
            self.ip_stack.clone(),
            wanted.ip_stack.clone(),
        );
        cmp(
            "flannel.ipv6_network",
            opt(&self.ipv6_cluster_cidr),
            opt(&wanted.ipv6_cluster_cidr),
        );
        cmp(
            "flannel.ipv6_subnet_len",
            optn(&self.ipv6_node_subnet_len),
            optn(&wanted.ipv6_node_subnet_len),
        );
        cmp(
            "terway.ip_prefix",
            self.ip_prefix.to_string(),
            wanted.ip_prefix.to_string(),
        );
        let removed: Vec<&String> = self
            .vswitches
            .iter()
            .filter(|v| !wanted.vswitches.contains(v))
            .collect();
        if !removed.is_empty() {
            out.push(Drift {
                field: "terway.vswitches (append-only)".into(),
                old: self.vswitches.join(","),
                new: format!(
                    "{} (removes {})",
                    wanted.vswitches.join(","),
                    removed
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            });
        }
        out
    }

    /// The record after an allowed change: same identity, vSwitches appended.
    pub fn merged(&self, wanted: &LockRecord) -> LockRecord {
        let mut next = self.clone();
        for v in &wanted.vswitches {
            if !next.vswitches.contains(v) {
                next.vswitches.push(v.clone());
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, FlannelMode};

    fn rec(c: &Config) -> LockRecord {
        LockRecord::from_config(c, "test", 0)
    }

    #[test]
    fn identical_config_has_no_drift() {
        let c = Config::default();
        assert!(rec(&c).drift(&rec(&c)).is_empty());
    }

    #[test]
    fn every_immutable_field_is_reported_with_old_and_new() {
        let a = Config::default();
        let mut b = a.clone();
        b.flannel.mode = FlannelMode::HostGw;
        b.flannel.network = "10.200.0.0/16".into();
        b.cluster.service_cidr = "10.100.0.0/16".into();
        b.flannel.subnet_len = 26;
        b.cluster.ip_stack = crate::IpStack::Dual;
        let d = rec(&a).drift(&rec(&b));
        let fields: Vec<&str> = d.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "flannel.mode",
                "flannel.network",
                "cluster.service_cidr",
                "flannel.subnet_len",
                "cluster.ip_stack"
            ]
        );
        assert_eq!(d[0].old, "vxlan");
        assert_eq!(d[0].new, "host-gw");
        assert_eq!(d[3].old, "24");
        assert_eq!(d[3].new, "26");
    }

    #[test]
    fn the_ipv6_network_of_a_dual_stack_flannel_cluster_is_locked() {
        let mut a = Config::default();
        a.cluster.ip_stack = crate::IpStack::Dual;
        a.flannel.ipv6_network = Some("fd00:10:244::/56".into());
        let locked = rec(&a);
        assert_eq!(locked.ipv6_node_subnet_len, Some(64));
        assert!(locked.drift(&rec(&a)).is_empty());
        let mut b = a.clone();
        b.flannel.ipv6_network = Some("fd00:10:245::/56".into());
        b.flannel.ipv6_subnet_len = 72;
        let d = locked.drift(&rec(&b));
        let got: Vec<(&str, &str, &str)> = d
            .iter()
            .map(|d| (d.field.as_str(), d.old.as_str(), d.new.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "flannel.ipv6_network",
                    "fd00:10:244::/56",
                    "fd00:10:245::/56"
                ),
                ("flannel.ipv6_subnet_len", "64", "72")
            ]
        );
        // A record written before dual stack (no IPv6 keys) still reads, as IPv4-only.
        let mut old = serde_json::to_value(rec(&Config::default())).unwrap();
        assert!(old.get("ipv6_cluster_cidr").is_none());
        old.as_object_mut().unwrap().remove("ipv6_node_subnet_len");
        let old: LockRecord = serde_json::from_value(old).unwrap();
        assert!(old.drift(&rec(&Config::default())).is_empty());
    }

    #[test]
    fn backend_kind_change_is_drift() {
        let a = Config::default();
        let mut b = a.clone();
        b.backend.kind = BackendKind::Terway;
        let d = rec(&a).drift(&rec(&b));
        assert!(d
            .iter()
            .any(|d| d.field == "backend.kind" && d.new == "terway"));
    }

    #[test]
    fn mutable_fields_are_not_drift() {
        let a = Config::default();
        let mut b = a.clone();
        b.log.level = "debug".into();
        b.terway.pool.max = 50;
        b.flannel.mtu = Some(1400);
        assert!(rec(&a).drift(&rec(&b)).is_empty());
    }

    #[test]
    fn prefix_mode_is_locked_and_old_records_read_as_off() {
        let mut a = Config::default();
        a.backend.kind = BackendKind::Terway;
        let mut b = a.clone();
        b.terway.ip_prefix = true;
        let d = rec(&a).drift(&rec(&b));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].field, "terway.ip_prefix");
        let old = serde_json::to_value(rec(&a)).unwrap();
        assert!(old.get("ip_prefix").is_none());
        let back: LockRecord = serde_json::from_value(old).unwrap();
        assert!(!back.ip_prefix);
    }

    #[test]
    fn vswitches_may_grow_but_not_shrink() {
        let mut a = Config::default();
        a.backend.kind = BackendKind::Terway;
        a.terway.vswitches = vec!["vsw-a".into(), "vsw-b".into()];
        let mut grown = a.clone();
        grown.terway.vswitches.push("vsw-c".into());
        let locked = rec(&a);
        assert!(locked.drift(&rec(&grown)).is_empty());
        assert_eq!(
            locked.merged(&rec(&grown)).vswitches,
            ["vsw-a", "vsw-b", "vsw-c"]
        );
        let mut shrunk = a.clone();
        shrunk.terway.vswitches = vec!["vsw-b".into()];
        let d = locked.drift(&rec(&shrunk));
        assert_eq!(d.len(), 1);
        assert!(d[0].new.contains("removes vsw-a"));
    }
}

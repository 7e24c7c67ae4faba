//! The DESIGN.md comparison table as `Capabilities` values, here so that `assess` and the
//! backends read the same data without depending on each other.

use unicni_core::Capabilities;

/// Flannel as the anchor ships it: no NetworkPolicy, IPv4 only, masqueraded egress.
/// (unicni can add the eBPF policy engine on top: `policy.enabled` in the config; callers
/// that know the config account for that themselves.)
pub fn flannel() -> Capabilities {
    Capabilities {
        backend: "flannel".into(),
        modes: vec!["vxlan".into(), "host-gw".into(), "vpc-route".into()],
        pod_ips_from_vpc: false,
        network_policy: false,
        dual_stack: false,
        fixed_ip: false,
        per_pod_vswitch: false,
        preserves_source_ip: false,
        pod_cidr_can_grow: false,
        cross_cluster_in_vpc: false,
        lb_to_pod_direct: false,
    }
}

/// Terway: VPC addresses on ENIs. `exclusive` selects exclusive-ENI mode, which has no
/// NetworkPolicy in the anchor.
pub fn terway(exclusive: bool) -> Capabilities {
    Capabilities {
        backend: "terway".into(),
        modes: vec!["shared-eni".into(), "exclusive-eni".into()],
        pod_ips_from_vpc: true,
        network_policy: !exclusive,
        dual_stack: true,
        fixed_ip: true,
        per_pod_vswitch: true,
        preserves_source_ip: true,
        pod_cidr_can_grow: true,
        cross_cluster_in_vpc: true,
        lb_to_pod_direct: true,
    }
}

/// The capabilities of `backend` in `mode`, or None for a backend unicni does not offer.
pub fn of(backend: &str, mode: &str) -> Option<Capabilities> {
    match backend {
        "flannel" => Some(flannel()),
        "terway" => Some(terway(mode == "exclusive-eni")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_of_design_md() {
        let f = flannel();
        let t = terway(false);
        assert!(!f.network_policy && t.network_policy);
        assert!(!f.fixed_ip && t.fixed_ip);
        assert!(!f.preserves_source_ip && t.preserves_source_ip);
        assert!(!terway(true).network_policy);
        assert_eq!(of("calico", ""), None);
    }
}

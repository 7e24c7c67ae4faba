//! What the flannel design offers, as data (DESIGN.md's comparison table).

use unicni_core::Capabilities;

pub fn capabilities() -> Capabilities {
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

//! Semantic checks the schema cannot express. Every error names key, value, and what is allowed.

use crate::{
    BackendKind, Config, FieldError, FlannelMode, IpStack, StoreKind, TerwayDatapath, TerwayMode,
};
use ipnet::{IpNet, Ipv4Net};
use std::net::SocketAddr;

const PRIVATE_V4: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, key: &str, value: impl ToString, allowed: impl Into<String>) {
        self.0.push(FieldError {
            key: key.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        });
    }

    /// Parses a CIDR whose host bits are zero; records an error and returns None otherwise.
    fn cidr(&mut self, key: &str, value: &str) -> Option<IpNet> {
        match value.parse::<IpNet>() {
            Ok(net) if net.trunc() == net => Some(net),
            Ok(net) => {
                self.push(
                    key,
                    value,
                    format!(
                        "a network address with host bits zero, e.g. {}",
                        net.trunc()
                    ),
                );
                None
            }
            Err(_) => {
                self.push(key, value, "a CIDR such as 10.244.0.0/16");
                None
            }
        }
    }
}

/// `cluster.service_cidr`: one CIDR, or an IPv4 and an IPv6 one separated by a comma.
fn validate_service_cidrs(c: &Config, e: &mut Errors) -> Vec<IpNet> {
    const KEY: &str = "cluster.service_cidr";
    let parts: Vec<&str> = c.cluster.service_cidr.split(',').map(str::trim).collect();
    let nets: Vec<IpNet> = parts.iter().filter_map(|p| e.cidr(KEY, p)).collect();
    let v4 = nets.iter().filter(|n| matches!(n, IpNet::V4(_))).count();
    if parts.len() > 2 || v4 > 1 || nets.len() - v4 > 1 {
        e.push(
            KEY,
            &c.cluster.service_cidr,
            "one CIDR, or one IPv4 and one IPv6 CIDR separated by a comma \
             (e.g. \"10.96.0.0/12,fd00:10:96::/112\")",
        );
    }
    nets
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A Linux interface name: 1 to 15 bytes, no '/', ':' or whitespace.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// A DNS-label-like name: lowercase letters, digits and '-', 1 to 63 characters.
fn valid_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

pub fn validate(c: &Config) -> Vec<FieldError> {
    let mut e = Errors(Vec::new());

    if !valid_label(&c.cluster.name) {
        e.push(
            "cluster.name",
            &c.cluster.name,
            "1-63 lowercase letters, digits or '-', not starting or ending with '-'",
        );
    }
    let service = validate_service_cidrs(c, &mut e);
    let vpc = c
        .cluster
        .vpc_cidr
        .as_deref()
        .and_then(|v| e.cidr("cluster.vpc_cidr", v));

    match c.backend.kind {
        BackendKind::Flannel => validate_flannel(c, &mut e, service, vpc),
        BackendKind::Terway => validate_terway(c, &mut e),
    }

    match c.store.kind {
        StoreKind::File => {
            if !c.store.path.starts_with('/') {
                e.push("store.path", &c.store.path, "an absolute directory path");
            }
        }
        StoreKind::Etcd => {
            if c.store.endpoints.is_empty() {
                e.push(
                    "store.endpoints",
                    "[]",
                    "at least one etcd URL such as http://127.0.0.1:2379",
                );
            }
            for ep in &c.store.endpoints {
                if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                    e.push(
                        "store.endpoints",
                        ep,
                        "URLs starting with http:// or https://",
                    );
                }
            }
            if c.store.lease_ttl_seconds < 10 {
                e.push(
                    "store.lease_ttl_seconds",
                    c.store.lease_ttl_seconds,
                    "at least 10 seconds",
                );
            }
        }
        StoreKind::Kubernetes => {}
    }
    for (key, v) in [
        ("node.state_dir", &c.node.state_dir),
        ("node.run_dir", &c.node.run_dir),
    ] {
        if !v.starts_with('/') {
            e.push(key, v, "an absolute directory path");
        }
    }
    if let Some(name) = &c.node.name {
        if name.is_empty() || name.len() > 253 {
            e.push(
                "node.name",
                name,
                "a Kubernetes node name (1-253 characters)",
            );
        }
    }
    if !c.cni.conf_name.ends_with(".conflist") || c.cni.conf_name.contains('/') {
        e.push(
            "cni.conf_name",
            &c.cni.conf_name,
            "a file name ending in .conflist, e.g. 10-unicni.conflist",
        );
    }
    if !valid_label(&c.cni.network_name) {
        e.push(
            "cni.network_name",
            &c.cni.network_name,
            "1-63 lowercase letters, digits or '-'",
        );
    }
    if !["0.4.0", "1.0.0", "1.1.0"].contains(&c.cni.version.as_str()) {
        e.push("cni.version", &c.cni.version, "one of 0.4.0, 1.0.0, 1.1.0");
    }
    for p in &c.cni.chain {
        if p.is_empty() || p.contains('/') || p == "unicni" {
            e.push(
                "cni.chain",
                p,
                "names of plugins in the CNI bin dir such as portmap or bandwidth",
            );
        }
    }
    if c.agent.listen.parse::<SocketAddr>().is_err() {
        e.push(
            "agent.listen",
            &c.agent.listen,
            "an address:port such as 127.0.0.1:9099",
        );
    }
    if c.agent.reconcile_seconds == 0 {
        e.push("agent.reconcile_seconds", 0, "1 or more");
    }
    validate_bpf(c, &mut e);
    validate_policy(c, &mut e);
    validate_services(c, &mut e);
    if !["trace", "debug", "info", "warn", "error"].contains(&c.log.level.as_str()) {
        e.push(
            "log.level",
            &c.log.level,
            "one of trace, debug, info, warn, error",
        );
    }
    e.0
}

fn validate_flannel(c: &Config, e: &mut Errors, service: Vec<IpNet>, vpc: Option<IpNet>) {
    let f = &c.flannel;
    match (c.cluster.ip_stack, f.mode) {
        (IpStack::Ipv6, _) => e.push(
            "cluster.ip_stack",
            "ipv6",
            "ipv4 or dual with backend.kind = flannel (IPv6-only flannel is not offered)",
        ),
        (IpStack::Dual, FlannelMode::VpcRoute) => e.push(
            "cluster.ip_stack",
            "dual",
            "ipv4 with flannel.mode = \"vpc-route\" (the VPC route table carries the IPv4 \
             node subnets only; use vxlan or host-gw for dual stack)",
        ),
        _ => {}
    }
    let network = e.cidr("flannel.network", &f.network);
    if let Some(net) = network {
        match net {
            IpNet::V4(v4) => {
                let private = PRIVATE_V4
                    .iter()
                    .map(|p| p.parse::<Ipv4Net>().expect("constant"))
                    .any(|p| p.contains(&v4));
                if !private {
                    e.push(
                        "flannel.network",
                        &f.network,
                        "a range inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
                    );
                }
                if f.subnet_len <= v4.prefix_len() || f.subnet_len > 30 {
                    e.push(
                        "flannel.subnet_len",
                        f.subnet_len,
                        format!(
                            "a prefix length longer than the network's /{} and at most 30",
                            v4.prefix_len()
                        ),
                    );
                }
            }
            IpNet::V6(_) => e.push(
                "flannel.network",
                &f.network,
                "an IPv4 CIDR in this version",
            ),
        }
        for svc in &service {
            if overlaps(&net, svc) {
                e.push(
                    "flannel.network",
                    &f.network,
                    format!("a range that does not overlap cluster.service_cidr ({svc})"),
                );
            }
        }
        if let Some(vpc) = vpc {
            if overlaps(&net, &vpc) {
                e.push(
                    "flannel.network",
                    &f.network,
                    format!("a range that does not overlap cluster.vpc_cidr ({vpc})"),
                );
            }
        }
    }
    validate_flannel_ipv6(c, e, &service, vpc, network);
    if let Some(ns) = &f.node_subnet {
        if let (Some(sub), Some(net)) = (e.cidr("flannel.node_subnet", ns), network) {
            if !net.contains(&sub) || sub.prefix_len() != f.subnet_len {
                e.push(
                    "flannel.node_subnet",
                    ns,
                    format!("a /{} inside flannel.network ({net})", f.subnet_len),
                );
            }
        }
    }
    if let Some(mtu) = f.mtu {
        if !(576..=65535).contains(&mtu) {
            e.push(
                "flannel.mtu",
                mtu,
                "576 to 65535 (unset: underlay MTU minus encapsulation)",
            );
        }
    }
    if !valid_ifname(&f.bridge) {
        e.push(
            "flannel.bridge",
            &f.bridge,
            "an interface name of 1-15 characters without '/', ':' or spaces",
        );
    }
    if let Some(i) = &f.interface {
        if !valid_ifname(i) {
            e.push(
                "flannel.interface",
                i,
                "an interface name of 1-15 characters",
            );
        }
    }
    if f.vni == 0 || f.vni > 0xFF_FFFF {
        e.push("flannel.vni", f.vni, "1 to 16777215");
    }
    if f.port == 0 {
        e.push("flannel.port", 0, "a UDP port, 1 to 65535");
    }
}

/// The IPv6 cluster network of a dual-stack flannel cluster: present exactly when
/// `cluster.ip_stack = "dual"`, IPv6, and holding at least as many node subnets as the
/// IPv4 network (a node's IPv6 subnet is the one at its IPv4 subnet's index).
fn validate_flannel_ipv6(
    c: &Config,
    e: &mut Errors,
    service: &[IpNet],
    vpc: Option<IpNet>,
    v4: Option<IpNet>,
) {
    const KEY: &str = "flannel.ipv6_network";
    let f = &c.flannel;
    let dual = c.cluster.ip_stack == IpStack::Dual;
    let Some(text) = &f.ipv6_network else {
        if dual {
            e.push(
                KEY,
                "(unset)",
                "an IPv6 CIDR such as fd00:10:244::/56 with cluster.ip_stack = \"dual\"",
            );
        }
        return;
    };
    if !dual {
        e.push(
            KEY,
            text,
            format!(
                "unset with cluster.ip_stack = \"{}\" (set ip_stack = \"dual\" to use it)",
                c.cluster.ip_stack.as_str()
            ),
        );
        return;
    }
    let Some(net) = e.cidr(KEY, text) else {
        return;
    };
    let IpNet::V6(v6) = net else {
        e.push(KEY, text, "an IPv6 CIDR such as fd00:10:244::/56");
        return;
    };
    let seg0 = v6.network().segments()[0];
    if seg0 & 0xffc0 == 0xfe80 || seg0 & 0xff00 == 0xff00 || v6.network().is_loopback() {
        e.push(
            KEY,
            text,
            "a unique local (fc00::/7) or global unicast range, not link-local or multicast",
        );
    }
    let len = f.ipv6_subnet_len;
    if len <= v6.prefix_len() || len > 120 {
        e.push(
            "flannel.ipv6_subnet_len",
            len,
            format!(
                "a prefix length longer than flannel.ipv6_network's /{} and at most 120 \
                 (64 by default)",
                v6.prefix_len()
            ),
        );
    } else if let Some(IpNet::V4(v4)) = v4 {
        // As many IPv6 node subnets as IPv4 ones: IPv6 is never what runs out.
        let need = f.subnet_len.saturating_sub(v4.prefix_len());
        let have = len - v6.prefix_len();
        if have < need && f.subnet_len > v4.prefix_len() && f.subnet_len <= 30 {
            e.push(
                KEY,
                text,
                format!(
                    "a range of /{} or shorter: it must hold a /{len} node subnet for each \
                     of the {} /{} subnets of flannel.network",
                    len - need,
                    1u64 << need,
                    f.subnet_len
                ),
            );
        }
    }
    for svc in service {
        if overlaps(&net, svc) {
            e.push(
                KEY,
                text,
                format!("a range that does not overlap cluster.service_cidr ({svc})"),
            );
        }
    }
    if let Some(vpc) = vpc {
        if overlaps(&net, &vpc) {
            e.push(
                KEY,
                text,
                format!("a range that does not overlap cluster.vpc_cidr ({vpc})"),
            );
        }
    }
}

fn validate_terway(c: &Config, e: &mut Errors) {
    let t = &c.terway;
    if t.vswitches.is_empty() {
        e.push(
            "terway.vswitches",
            "[]",
            "at least one vSwitch ID such as vsw-xxxx",
        );
    }
    for v in &t.vswitches {
        if !v.starts_with("vsw-") {
            e.push("terway.vswitches", v, "vSwitch IDs, which start with vsw-");
        }
    }
    for sg in &t.security_groups {
        if !sg.starts_with("sg-") {
            e.push(
                "terway.security_groups",
                sg,
                "security group IDs, which start with sg-",
            );
        }
    }
    if c.cluster.ip_stack == IpStack::Ipv6 {
        e.push(
            "cluster.ip_stack",
            "ipv6",
            "ipv4 or dual with backend.kind = terway (pods always get a VPC IPv4 address)",
        );
    }
    if t.ip_prefix && t.mode == TerwayMode::ExclusiveEni {
        e.push(
            "terway.ip_prefix",
            true,
            "false with terway.mode = \"exclusive-eni\" (a pod owns its whole ENI; prefix \
             mode is for shared-eni)",
        );
    }
    if t.agent_timeout_seconds == 0 {
        e.push(
            "terway.agent_timeout_seconds",
            0,
            "a number of seconds, 1 or more",
        );
    }
    if t.pool.min > t.pool.max {
        e.push(
            "terway.pool.min",
            t.pool.min,
            format!("at most terway.pool.max ({})", t.pool.max),
        );
    }
    if t.pool.warm_up > t.pool.max {
        e.push(
            "terway.pool.warm_up",
            t.pool.warm_up,
            format!("0 (use pool.min) to terway.pool.max ({})", t.pool.max),
        );
    }
    if !(1..=100).contains(&t.pool.high_watermark_percent) {
        e.push(
            "terway.pool.high_watermark_percent",
            t.pool.high_watermark_percent,
            "1 to 100 (100 turns pre-growing off)",
        );
    }
    if !(1..=10).contains(&t.pool.reclaim_batch) {
        e.push(
            "terway.pool.reclaim_batch",
            t.pool.reclaim_batch,
            "1 to 10 (the vendor's addresses per call)",
        );
    }
    if t.pool.reclaim_jitter_percent > 100 {
        e.push(
            "terway.pool.reclaim_jitter_percent",
            t.pool.reclaim_jitter_percent,
            "0 to 100",
        );
    }
}

/// The pin directory must be absolute and name a directory of its own (`remove_all` at
/// uninstall deletes it), and the eBPF datapath only exists where there is a host veth.
fn validate_bpf(c: &Config, e: &mut Errors) {
    let pin = c.bpf.pin_dir.trim_end_matches('/');
    if !pin.starts_with('/') || pin.split('/').filter(|p| !p.is_empty()).count() < 2 {
        e.push(
            "bpf.pin_dir",
            &c.bpf.pin_dir,
            "an absolute directory of its own on a bpf filesystem, e.g. /sys/fs/bpf/unicni",
        );
    } else if pin.split('/').any(|p| p == "." || p == "..") || pin.contains('.') {
        // bpffs refuses dots in names.
        e.push(
            "bpf.pin_dir",
            &c.bpf.pin_dir,
            "a path without '.' (bpffs refuses dots in names)",
        );
    }
    if c.backend.kind == BackendKind::Terway
        && c.terway.datapath == TerwayDatapath::Ebpf
        && c.terway.mode == TerwayMode::ExclusiveEni
    {
        e.push(
            "terway.datapath",
            "ebpf",
            "routing with terway.mode = \"exclusive-eni\" (the pod owns its ENI; the eBPF \
             fast path is for shared-eni)",
        );
    }
}

/// NetworkPolicy works with every backend, mode and datapath (the programs run ahead of
/// the eBPF fast paths, and on an exclusive-ENI pod's ENI inside the pod); the manifest
/// directory must be an absolute path.
fn validate_policy(c: &Config, e: &mut Errors) {
    if let Some(dir) = &c.policy.manifests_dir {
        if !dir.starts_with('/') {
            e.push(
                "policy.manifests_dir",
                dir,
                "an absolute directory of NetworkPolicy/Pod/Namespace manifests",
            );
        }
    }
}

fn validate_services(c: &Config, e: &mut Errors) {
    if let Some(dir) = &c.services.manifests_dir {
        if !dir.starts_with('/') {
            e.push(
                "services.manifests_dir",
                dir,
                "an absolute directory of Service/EndpointSlice manifests",
            );
        }
    }
    if let Some(dir) = &c.services.cgroup_root {
        if !dir.starts_with('/') {
            e.push(
                "services.cgroup_root",
                dir,
                "an absolute path where the host's cgroup v2 hierarchy is mounted",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{load_str, ConfigError, Format};

    fn errs(toml: &str) -> Vec<(String, String)> {
        match load_str(toml, Format::Toml) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid(v)) => v.into_iter().map(|f| (f.key, f.value)).collect(),
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert!(errs("").is_empty());
    }

    #[test]
    fn the_shipped_examples_are_valid() {
        for f in [
            "flannel.toml",
            "flannel-host-gw.toml",
            "flannel-dual.toml",
            "terway.toml",
        ] {
            let path = format!("{}/../../config/{f}", env!("CARGO_MANIFEST_DIR"));
            if let Err(e) = crate::load(std::path::Path::new(&path)) {
                panic!("{f}: {e}");
            }
        }
    }

    #[test]
    fn bad_cidr_names_key_and_value() {
        let e = errs("[flannel]\nnetwork = \"10.244.0.0/33\"\n");
        assert_eq!(e, [("flannel.network".into(), "10.244.0.0/33".into())]);
    }

    #[test]
    fn host_bits_are_refused() {
        let e = errs("[cluster]\nservice_cidr = \"10.96.0.1/12\"\n");
        assert_eq!(e[0].0, "cluster.service_cidr");
    }

    #[test]
    fn dual_stack_service_cidrs_are_one_per_family() {
        let ok = "[cluster]\nservice_cidr = \"10.96.0.0/12, fd00:10:96::/112\"\n";
        assert!(errs(ok).is_empty(), "{:?}", errs(ok));
        let c = load_str(ok, Format::Toml).unwrap();
        assert_eq!(c.cluster.service_cidrs().len(), 2);
        for bad in [
            "10.96.0.0/12,10.100.0.0/16",
            "fd00::/112,fd01::/112",
            "10.96.0.0/12,fd00::/112,10.1.0.0/16",
        ] {
            let e = errs(&format!("[cluster]\nservice_cidr = \"{bad}\"\n"));
            assert_eq!(e, [("cluster.service_cidr".into(), bad.into())], "{bad}");
        }
        let e = errs("[cluster]\nservice_cidr = \"10.96.0.0/12,fd00::1/112\"\n");
        assert_eq!(e, [("cluster.service_cidr".into(), "fd00::1/112".into())]);
    }

    #[test]
    fn overlap_with_service_cidr_is_refused() {
        let e = errs("[flannel]\nnetwork = \"10.96.0.0/16\"\n");
        assert!(e.iter().any(|(k, _)| k == "flannel.network"), "{e:?}");
    }

    #[test]
    fn public_network_is_refused() {
        let e = errs("[flannel]\nnetwork = \"8.8.0.0/16\"\n");
        assert_eq!(e[0].0, "flannel.network");
    }

    #[test]
    fn subnet_len_must_be_longer_than_network() {
        let e = errs("[flannel]\nnetwork = \"10.244.0.0/16\"\nsubnet_len = 16\n");
        assert_eq!(e, [("flannel.subnet_len".into(), "16".into())]);
    }

    #[test]
    fn node_subnet_must_sit_in_network_with_the_right_length() {
        let e = errs("[flannel]\nnode_subnet = \"10.245.1.0/24\"\n");
        assert_eq!(e[0].0, "flannel.node_subnet");
        let e = errs("[flannel]\nnode_subnet = \"10.244.1.0/25\"\n");
        assert_eq!(e[0].0, "flannel.node_subnet");
        assert!(errs("[flannel]\nnode_subnet = \"10.244.1.0/24\"\n").is_empty());
    }

    #[test]
    fn unknown_mode_names_allowed_values() {
        let err = load_str("[flannel]\nmode = \"ipip\"\n", Format::Toml).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("flannel.mode"), "{msg}");
        assert!(msg.contains("host-gw"), "{msg}");
        assert!(msg.contains("ipip"), "{msg}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let err = load_str("[flannel]\nnetwrok = \"10.0.0.0/8\"\n", Format::Toml).unwrap_err();
        assert!(err.to_string().contains("netwrok"), "{err}");
    }

    #[test]
    fn yaml_is_accepted() {
        let c = load_str("flannel:\n  mode: host-gw\n", Format::Yaml).unwrap();
        assert_eq!(c.flannel.mode, crate::FlannelMode::HostGw);
    }

    #[test]
    fn terway_needs_vswitches_and_sane_pool() {
        let e = errs("[backend]\nkind = \"terway\"\n[terway.pool]\nmin = 9\nmax = 2\n");
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["terway.vswitches", "terway.pool.min"]);
    }

    #[test]
    fn burst_pool_fields_name_the_field_and_the_allowed_values() {
        let toml =
            "[backend]\nkind = \"terway\"\n[terway]\nvswitches = [\"vsw-1\"]\n[terway.pool]\n\
             max = 5\nwarm_up = 6\nhigh_watermark_percent = 0\nreclaim_batch = 11\n\
             reclaim_jitter_percent = 101\n";
        let keys: Vec<String> = errs(toml).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "terway.pool.warm_up",
                "terway.pool.high_watermark_percent",
                "terway.pool.reclaim_batch",
                "terway.pool.reclaim_jitter_percent"
            ]
        );
        let msg = load_str(toml, Format::Toml).unwrap_err().to_string();
        for allowed in ["terway.pool.max (5)", "1 to 100", "1 to 10", "0 to 100"] {
            assert!(msg.contains(allowed), "{allowed} not in {msg}");
        }
        assert!(errs(
            "[backend]\nkind = \"terway\"\n[terway]\nvswitches = [\"vsw-1\"]\n[terway.pool]\n\
             warm_up = 3\nidle_reclaim_seconds = 0\n"
        )
        .is_empty());
    }

    #[test]
    fn bpf_section_and_fast_path_switches() {
        let c = load_str(
            "[flannel]\nfast_path = true\n[bpf]\npin_dir = \"/sys/fs/bpf/node-a\"\nfallback = false\n",
            Format::Toml,
        )
        .unwrap();
        assert!(c.flannel.fast_path);
        assert_eq!(c.bpf.pin_dir, "/sys/fs/bpf/node-a");
        assert!(!c.bpf.fallback);
        let d = crate::Config::default();
        assert_eq!(d.bpf.pin_dir, "/sys/fs/bpf/unicni");
        assert!(d.bpf.fallback && !d.flannel.fast_path);
        for bad in ["relative/dir", "/", "/sys", "/sys/fs/bpf/a.b"] {
            let e = errs(&format!("[bpf]\npin_dir = \"{bad}\"\n"));
            assert_eq!(e, [("bpf.pin_dir".into(), bad.into())]);
        }
        let terway = "[backend]\nkind = \"terway\"\n[terway]\nvswitches = [\"vsw-a\"]\n";
        assert!(errs(&format!("{terway}datapath = \"ebpf\"\n")).is_empty());
        let e = errs(&format!(
            "{terway}datapath = \"ebpf\"\nmode = \"exclusive-eni\"\n"
        ));
        assert_eq!(e, [("terway.datapath".into(), "ebpf".into())]);
        let err = load_str(&format!("{terway}datapath = \"xdp\"\n"), Format::Toml).unwrap_err();
        assert!(err.to_string().contains("ebpf"), "{err}");
    }

    #[test]
    fn prefix_mode_is_for_shared_eni_and_services_dir_is_absolute() {
        let e = errs(
            "[backend]\nkind = \"terway\"\n[terway]\nmode = \"exclusive-eni\"\nvswitches = [\"vsw-a\"]\nip_prefix = true\n",
        );
        assert_eq!(e, [("terway.ip_prefix".into(), "true".into())]);
        assert!(errs(
            "[backend]\nkind = \"terway\"\n[terway]\nvswitches = [\"vsw-a\"]\nip_prefix = true\n"
        )
        .is_empty());
        let e = errs("[services]\nenabled = true\nmanifests_dir = \"svc\"\n");
        assert_eq!(e, [("services.manifests_dir".into(), "svc".into())]);
        let e = errs("[services]\nenabled = true\ncgroup_root = \"cg\"\n");
        assert_eq!(e, [("services.cgroup_root".into(), "cg".into())]);
    }

    #[test]
    fn policy_section_is_validated() {
        let c = load_str(
            "[policy]\nenabled = true\nmanifests_dir = \"/etc/unicni/policies\"\n",
            Format::Toml,
        )
        .unwrap();
        assert!(c.policy.enabled);
        assert_eq!(
            c.policy.manifests_dir.as_deref(),
            Some("/etc/unicni/policies")
        );
        let e = errs("[policy]\nenabled = true\nmanifests_dir = \"policies\"\n");
        assert_eq!(e, [("policy.manifests_dir".into(), "policies".into())]);
        let terway = "[backend]\nkind = \"terway\"\n[terway]\nvswitches = [\"vsw-a\"]\n";
        assert!(errs(&format!("{terway}[policy]\nenabled = true\n")).is_empty());
        // Enforced ahead of the eBPF fast path, and on the ENI inside an exclusive pod.
        for with in ["mode = \"exclusive-eni\"", "datapath = \"ebpf\""] {
            let e = errs(&format!("{terway}{with}\n[policy]\nenabled = true\n"));
            assert!(e.is_empty(), "{with}: {e:?}");
        }
        assert!(errs(&format!(
            "{terway}datapath = \"ebpf\"\n[policy]\nenabled = false\n"
        ))
        .is_empty());
    }

    #[test]
    fn flannel_dual_stack_needs_an_ipv6_network_that_is_never_the_limit() {
        let dual = "[cluster]\nip_stack = \"dual\"\n";
        let ok = format!("{dual}[flannel]\nipv6_network = \"fd00:10:244::/56\"\n");
        assert!(errs(&ok).is_empty(), "{:?}", errs(&ok));
        let c = load_str(&ok, Format::Toml).unwrap();
        assert_eq!(c.flannel.ipv6_subnet_len, 64);
        // Missing, IPv4, host bits, link-local: all on the field itself.
        for (net, value) in [
            (None, "(unset)"),
            (Some("10.250.0.0/16"), "10.250.0.0/16"),
            (Some("fd00:10:244::1/56"), "fd00:10:244::1/56"),
            (Some("fe80::/56"), "fe80::/56"),
        ] {
            let t = match net {
                Some(n) => format!("{dual}[flannel]\nipv6_network = \"{n}\"\n"),
                None => dual.to_string(),
            };
            let e = errs(&t);
            assert_eq!(e, [("flannel.ipv6_network".into(), value.into())], "{t}");
        }
        // A /60 holds 16 /64s, the /16 network 256 /24s: refused, naming the size needed.
        let small = format!("{dual}[flannel]\nipv6_network = \"fd00:10:244::/60\"\n");
        let err = load_str(&small, Format::Toml).unwrap_err().to_string();
        assert!(
            err.contains("flannel.ipv6_network") && err.contains("/56"),
            "{err}"
        );
        let e = errs(&format!("{ok}ipv6_subnet_len = 56\n"));
        assert_eq!(e, [("flannel.ipv6_subnet_len".into(), "56".into())]);
        // Only with dual stack; never IPv6-only; never with vpc-route.
        let e = errs("[flannel]\nipv6_network = \"fd00:10:244::/56\"\n");
        assert_eq!(
            e,
            [("flannel.ipv6_network".into(), "fd00:10:244::/56".into())]
        );
        let e = errs("[cluster]\nip_stack = \"ipv6\"\n");
        assert_eq!(e, [("cluster.ip_stack".into(), "ipv6".into())]);
        let err = load_str(&format!("{ok}mode = \"vpc-route\"\n"), Format::Toml)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cluster.ip_stack") && err.contains("vpc-route"),
            "{err}"
        );
        let e = errs(
            "[cluster]\nip_stack = \"dual\"\nservice_cidr = \"10.96.0.0/12,fd00:10:244:ff::/112\"\n\
             [flannel]\nipv6_network = \"fd00:10:244::/56\"\n",
        );
        assert_eq!(
            e,
            [("flannel.ipv6_network".into(), "fd00:10:244::/56".into())]
        );
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let e = errs("[log]\nlevel = \"loud\"\n[flannel]\nbridge = \"a/b\"\nvni = 0\n");
        assert_eq!(e.len(), 3, "{e:?}");
    }
}

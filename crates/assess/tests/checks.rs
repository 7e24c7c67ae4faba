//! Every check, firing and not firing: a healthy baseline, then one change at a time.

use unicni_assess::inventory::{
    Cluster, CurrentNetwork, IpStack, NetworkPolicy, Node, Pod, PodPhase, RouteTable, Service,
    ServiceType,
};
use unicni_assess::{assess, CheckId, Inventory, Options, Report, Severity, Status, Verdict};
use unicni_capacity::{InstanceTypeTable, VSwitch};
use unicni_config::{BackendKind, Config, FlannelMode, TerwayMode};

fn node(name: &str, zone: &str, itype: &str) -> Node {
    Node {
        name: name.into(),
        zone: Some(zone.into()),
        instance_type: Some(itype.into()),
        pool: Some("pool-a".into()),
        pod_cidr: None,
        internal_ip: None,
        ready: true,
    }
}

fn pod(ns: &str, name: &str, node: &str) -> Pod {
    Pod {
        namespace: ns.into(),
        name: name.into(),
        node: Some(node.into()),
        phase: PodPhase::Running,
        reason: None,
        owner: Some("Deployment/app".into()),
        host_network: false,
        host_ports: vec![],
        ips: vec![],
        fixed_ip: false,
        pod_networking: None,
    }
}

/// A flannel vpc-route cluster that moves to terway without any warning.
fn baseline() -> Inventory {
    let mut inv = Inventory::new(Cluster {
        name: "base".into(),
        kubernetes_version: None,
        network: CurrentNetwork {
            backend: "flannel".into(),
            mode: Some("vpc-route".into()),
            cluster_cidr: Some("172.20.0.0/16".parse().unwrap()),
            node_subnet_len: Some(24),
        },
        service_cidr: Some("172.21.0.0/20".parse().unwrap()),
        vpc_cidr: Some("10.0.0.0/8".parse().unwrap()),
        ip_stack: IpStack::Ipv4,
        other_cluster_cidrs: vec![],
        node_limit: None,
    });
    inv.cloud.vswitches = vec![
        VSwitch {
            id: "vsw-a".into(),
            zone: "z-a".into(),
            cidr: "10.1.0.0/16".parse().unwrap(),
            free_ips: 50_000,
        },
        VSwitch {
            id: "vsw-b".into(),
            zone: "z-b".into(),
            cidr: "10.2.0.0/16".parse().unwrap(),
            free_ips: 50_000,
        },
    ];
    inv.cloud.route_table = Some(RouteTable {
        quota: 200,
        entries_used: 0,
    });
    inv.nodes = vec![
        node("n1", "z-a", "ecs.g7.2xlarge"),
        node("n2", "z-b", "ecs.c7.4xlarge"),
    ];
    inv.pods = (0..10)
        .map(|i| {
            pod(
                "app",
                &format!("p{i}"),
                if i % 2 == 0 { "n1" } else { "n2" },
            )
        })
        .collect();
    inv
}

fn opts(to: BackendKind) -> Options {
    Options {
        to,
        target_config: None,
        instance_types: InstanceTypeTable::builtin(),
        ignore: vec![],
    }
}

fn run(inv: &Inventory, to: BackendKind) -> Report {
    assess(inv, &opts(to)).expect("assessment runs")
}

fn run_with(inv: &Inventory, config: Config) -> Report {
    let mut o = opts(config.backend.kind);
    o.target_config = Some((config, "test config".into()));
    assess(inv, &o).expect("assessment runs")
}

fn status(r: &Report, id: CheckId) -> Status {
    r.checks
        .iter()
        .find(|c| c.id == id.as_str())
        .unwrap_or_else(|| panic!("check {id} ran"))
        .status
}

fn messages(r: &Report, id: CheckId) -> String {
    let c = r.checks.iter().find(|c| c.id == id.as_str()).unwrap();
    c.findings
        .iter()
        .map(|f| format!("[{}] {} {}", f.severity.as_str(), f.object, f.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The check has no warning or blocker.
fn quiet(r: &Report, id: CheckId) {
    let s = status(r, id);
    assert!(
        matches!(s, Status::Pass | Status::Info | Status::Skipped),
        "{id} fired: {s:?}\n{}",
        messages(r, id)
    );
}

fn terway_config(mode: TerwayMode) -> Config {
    let mut c = Config::default();
    c.backend.kind = BackendKind::Terway;
    c.cluster.service_cidr = "172.21.0.0/20".into();
    c.terway.mode = mode;
    c.terway.vswitches = vec!["vsw-a".into(), "vsw-b".into()];
    c
}

fn flannel_config(network: &str, mode: FlannelMode) -> Config {
    let mut c = Config::default();
    c.cluster.service_cidr = "172.21.0.0/20".into();
    c.flannel.network = network.into();
    c.flannel.mode = mode;
    c
}

#[test]
fn baseline_is_ready_and_no_check_fires() {
    let r = run(&baseline(), BackendKind::Terway);
    for id in CheckId::ALL {
        quiet(&r, id);
    }
    assert_eq!(r.verdict, Verdict::Ready);
    assert_eq!(r.exit_code(Default::default()), 0);
    assert_eq!(r.migration_path.strategy.as_str(), "node-pool-by-node-pool");
}

#[test]
fn current_backend_fires_for_an_unknown_plugin() {
    let mut inv = baseline();
    inv.cluster.network.backend = "cilium".into();
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(status(&r, CheckId::CurrentBackend), Status::Warning);
    assert_eq!(r.migration_path.strategy.as_str(), "new-cluster");
}

#[test]
fn current_backend_same_network_is_nothing_to_migrate() {
    let inv = baseline();
    let r = run_with(
        &inv,
        flannel_config("192.168.0.0/16", FlannelMode::VpcRoute),
    );
    quiet(&r, CheckId::CurrentBackend);
    assert_eq!(r.migration_path.strategy.as_str(), "none");
    assert!(r.migration_path.steps.is_empty());
}

#[test]
fn node_capacity_fires_when_pods_exceed_the_instance_type() {
    let mut inv = baseline();
    // ecs.g7.2xlarge holds 45 pods in shared mode.
    inv.pods = (0..46).map(|i| pod("a", &format!("p{i}"), "n1")).collect();
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(
        status(&r, CheckId::NodeCapacity),
        Status::Blocker,
        "{}",
        messages(&r, CheckId::NodeCapacity)
    );
    assert!(messages(&r, CheckId::NodeCapacity).contains("node/n1"));
    // 41 of 45 leaves less than 10% headroom.
    inv.pods.truncate(41);
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(status(&r, CheckId::NodeCapacity), Status::Warning);
    // Host-network and finished pods take no pod address.
    for p in inv.pods.iter_mut().skip(20) {
        p.host_network = true;
    }
    inv.pods[0].phase = PodPhase::Succeeded;
    let r = run(&inv, BackendKind::Terway);
    quiet(&r, CheckId::NodeCapacity);
}

#[test]
fn node_capacity_fires_for_small_types_and_exclusive_mode() {
    let mut inv = baseline();
    inv.nodes[0].instance_type = Some("ecs.g6.large".into());
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(status(&r, CheckId::NodeCapacity), Status::Blocker);
    assert!(messages(&r, CheckId::NodeCapacity).contains("not more than 11"));
    // Exclusive ENI: ecs.c7.4xlarge holds 7 pods; n2 runs 5 -> fine, 8 -> blocker.
    let mut inv = baseline();
    inv.pods = (0..7).map(|i| pod("a", &format!("p{i}"), "n2")).collect();
    let r = run_with(&inv, terway_config(TerwayMode::ExclusiveEni));
    assert_eq!(
        status(&r, CheckId::NodeCapacity),
        Status::Warning,
        "7 of 7: no headroom"
    );
    inv.pods.truncate(4);
    let r = run_with(&inv, terway_config(TerwayMode::ExclusiveEni));
    quiet(&r, CheckId::NodeCapacity);
    inv.pods = (0..8).map(|i| pod("a", &format!("p{i}"), "n2")).collect();
    let r = run_with(&inv, terway_config(TerwayMode::ExclusiveEni));
    assert_eq!(status(&r, CheckId::NodeCapacity), Status::Blocker);
}

#[test]
fn node_capacity_warns_on_unknown_instance_types() {
    let mut inv = baseline();
    inv.nodes[1].instance_type = Some("ecs.zz9.huge".into());
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(status(&r, CheckId::NodeCapacity), Status::Warning);
    assert!(messages(&r, CheckId::NodeCapacity).contains("ecs.zz9.huge"));
    // An override table that knows the type silences it.
    let mut o = opts(BackendKind::Terway);
    o.instance_types = o.instance_types.overlay(InstanceTypeTable::from_limits(
        vec![unicni_capacity::InstanceTypeLimits {
            name: "ecs.zz9.huge".into(),
            enis: 4,
            ipv4_per_eni: 10,
            ipv6_per_eni: 0,
        }],
        "test",
    ));
    let r = assess(&inv, &o).unwrap();
    quiet(&r, CheckId::NodeCapacity);
}

#[test]
fn node_capacity_flannel_uses_the_node_subnet() {
    let mut inv = baseline();
    let mut c = flannel_config("192.168.0.0/16", FlannelMode::Vxlan);
    c.flannel.subnet_len = 28; // 13 pods per node
    let r = run_with(&inv, c.clone());
    quiet(&r, CheckId::NodeCapacity);
    inv.pods = (0..14).map(|i| pod("a", &format!("p{i}"), "n1")).collect();
    let r = run_with(&inv, c);
    assert_eq!(status(&r, CheckId::NodeCapacity), Status::Blocker);
}

#[test]
fn lost_features_network_policy() {
    let mut inv = baseline();
    inv.cluster.network = CurrentNetwork {
        backend: "terway".into(),
        mode: Some("shared-eni".into()),
        cluster_cidr: None,
        node_subnet_len: None,
    };
    inv.network_policies.push(NetworkPolicy {
        namespace: "a".into(),
        name: "deny".into(),
    });
    let c = flannel_config("192.168.0.0/16", FlannelMode::Vxlan);
    let r = run_with(&inv, c.clone());
    assert_eq!(status(&r, CheckId::LostFeatures), Status::Blocker);
    assert!(messages(&r, CheckId::LostFeatures).contains("networkpolicy/a/deny"));
    // unicni's flannel with the eBPF policy engine keeps NetworkPolicy.
    let mut c2 = c;
    c2.policy.enabled = true;
    let r = run_with(&inv, c2);
    assert!(!messages(&r, CheckId::LostFeatures).contains("NetworkPolicy"));
    // Terway shared ENI enforces it, exclusive ENI only with the policy engine.
    let mut inv = baseline();
    inv.network_policies.push(NetworkPolicy {
        namespace: "a".into(),
        name: "deny".into(),
    });
    quiet(&run(&inv, BackendKind::Terway), CheckId::LostFeatures);
    let r = run_with(&inv, terway_config(TerwayMode::ExclusiveEni));
    assert_eq!(status(&r, CheckId::LostFeatures), Status::Blocker);
    let mut c = terway_config(TerwayMode::ExclusiveEni);
    c.policy.enabled = true;
    quiet(&run_with(&inv, c), CheckId::LostFeatures);
}

fn terway_cluster() -> Inventory {
    let mut inv = baseline();
    inv.cluster.network = CurrentNetwork {
        backend: "terway".into(),
        mode: Some("shared-eni".into()),
        cluster_cidr: None,
        node_subnet_len: None,
    };
    inv.pods.clear();
    inv
}

#[test]
fn lost_features_terway_only_features() {
    let c = flannel_config("192.168.0.0/16", FlannelMode::Vxlan);
    // Without pods nothing is lost.
    quiet(
        &run_with(&terway_cluster(), c.clone()),
        CheckId::LostFeatures,
    );

    let mut inv = terway_cluster();
    let mut p = pod("db", "pg-0", "n1");
    p.owner = Some("StatefulSet/pg".into());
    p.fixed_ip = true;
    inv.pods.push(p);
    let r = run_with(&inv, c.clone());
    assert_eq!(status(&r, CheckId::LostFeatures), Status::Blocker);
    assert!(messages(&r, CheckId::LostFeatures).contains("db/StatefulSet/pg"));

    let mut inv = terway_cluster();
    let mut p = pod("a", "v6", "n1");
    p.ips = vec!["fd00::1".parse().unwrap()];
    p.host_network = true; // no egress warning, only the IPv6 use
    inv.pods.push(p);
    let r = run_with(&inv, c.clone());
    assert_eq!(status(&r, CheckId::LostFeatures), Status::Blocker);
    // flannel vxlan can keep IPv6 (dual stack), but this target config says IPv4.
    assert!(messages(&r, CheckId::LostFeatures).contains("cluster.ip_stack = \"ipv4\""));
    let mut v4only = c.clone();
    v4only.flannel.mode = FlannelMode::VpcRoute;
    let r = run_with(&inv, v4only);
    assert_eq!(status(&r, CheckId::LostFeatures), Status::Blocker);
    assert!(messages(&r, CheckId::LostFeatures).contains("ipv4 only"));

    let mut inv = terway_cluster();
    let mut p = pod("a", "iso", "n1");
    p.pod_networking = Some("isolated".into());
    inv.pods.push(p);
    let r = run_with(&inv, c.clone());
    assert!(messages(&r, CheckId::LostFeatures).contains("podnetworking/isolated"));

    let mut inv = terway_cluster();
    inv.services.push(Service {
        namespace: "a".into(),
        name: "lb".into(),
        service_type: ServiceType::LoadBalancer,
        node_ports: vec![],
        external_traffic_policy: None,
        lb_to_pod: true,
    });
    inv.cluster.other_cluster_cidrs = vec!["192.169.0.0/16".parse().unwrap()];
    let r = run_with(&inv, c.clone());
    assert_eq!(status(&r, CheckId::LostFeatures), Status::Warning);
    let m = messages(&r, CheckId::LostFeatures);
    assert_mentions(&m, &["service/a/lb", "other clusters"]);

    // Egress source address: pods that leave with their own address will be masqueraded.
    let mut inv = terway_cluster();
    inv.pods.push(pod("a", "web", "n1"));
    let r = run_with(&inv, c);
    assert_eq!(status(&r, CheckId::LostFeatures), Status::Warning);
    assert!(messages(&r, CheckId::LostFeatures).contains("masquerade"));
}

#[test]
fn dual_stack_to_terway_needs_a_dual_stack_target() {
    let mut inv = baseline();
    inv.cluster.ip_stack = IpStack::Dual;
    quiet(&run(&inv, BackendKind::Terway), CheckId::LostFeatures);
    let r = run_with(&inv, terway_config(TerwayMode::SharedEni));
    assert_eq!(status(&r, CheckId::LostFeatures), Status::Blocker);
    assert!(messages(&r, CheckId::LostFeatures).contains("ip_stack"));
}

#[test]
fn dual_stack_to_and_from_flannel_says_what_carries_over() {
    // A dual-stack terway cluster to flannel: vxlan keeps dual stack (an assumed config
    // gets an IPv6 network), vpc-route cannot.
    let mut inv = terway_cluster();
    inv.cluster.ip_stack = IpStack::Dual;
    let r = run(&inv, BackendKind::Flannel);
    quiet(&r, CheckId::LostFeatures);
    let m = messages(&r, CheckId::LostFeatures);
    assert_mentions(
        &m,
        &["dual stack carries over", "fd00:10:244::/56", "masqueraded"],
    );
    let mut c = flannel_config("10.200.0.0/16", FlannelMode::Vxlan);
    c.cluster.ip_stack = unicni_config::IpStack::Dual;
    c.flannel.ipv6_network = Some("fd00:99::/56".into());
    let r = run_with(&inv, c.clone());
    quiet(&r, CheckId::LostFeatures);
    assert!(messages(&r, CheckId::LostFeatures).contains("fd00:99::/56"));
    // vpc-route with dual stack is a config error; as IPv4 it loses the cluster's IPv6.
    c.flannel.mode = FlannelMode::VpcRoute;
    c.cluster.ip_stack = unicni_config::IpStack::Ipv4;
    c.flannel.ipv6_network = None;
    let r = run_with(&inv, c);
    assert_eq!(status(&r, CheckId::LostFeatures), Status::Blocker);
    assert!(messages(&r, CheckId::LostFeatures).contains("ipv4 only"));
    // A dual-stack flannel cluster to terway: pods keep IPv6, now their own on egress.
    let mut inv = baseline();
    inv.cluster.network.mode = Some("vxlan".into());
    inv.cluster.ip_stack = IpStack::Dual;
    let r = run(&inv, BackendKind::Terway);
    quiet(&r, CheckId::LostFeatures);
    assert_mentions(
        &messages(&r, CheckId::LostFeatures),
        &["dual stack carries over", "own IPv6 address"],
    );
}

#[test]
fn vswitch_ips_fires_per_zone() {
    let mut inv = baseline();
    inv.cloud.vswitches[1].free_ips = 3; // z-b needs 5
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(status(&r, CheckId::VswitchIps), Status::Blocker);
    assert!(messages(&r, CheckId::VswitchIps).contains("zone/z-b"));
    inv.cloud.vswitches[1].free_ips = 6; // 5 needed, less than 25% spare
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(status(&r, CheckId::VswitchIps), Status::Warning);
    inv.cloud.vswitches.truncate(1); // no vSwitch in z-b at all
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(status(&r, CheckId::VswitchIps), Status::Blocker);
    assert!(messages(&r, CheckId::VswitchIps).contains("must be in the node's zone"));
    // A target naming a vSwitch the inventory does not describe.
    let mut c = terway_config(TerwayMode::SharedEni);
    c.terway.vswitches.push("vsw-ghost".into());
    let r = run_with(&baseline(), c);
    assert_eq!(status(&r, CheckId::VswitchIps), Status::Warning);
    assert!(messages(&r, CheckId::VswitchIps).contains("vswitch/vsw-ghost"));
    // Not applicable to flannel.
    let r = run(&baseline(), BackendKind::Flannel);
    assert_eq!(status(&r, CheckId::VswitchIps), Status::Skipped);
}

#[test]
fn cidr_conflicts_to_flannel() {
    let inv = baseline();
    quiet(&run(&inv, BackendKind::Flannel), CheckId::CidrConflicts);
    for (network, clash) in [
        ("10.0.0.0/16", "the VPC"),
        ("172.20.0.0/16", "the current cluster network"),
    ] {
        let r = run_with(&inv, flannel_config(network, FlannelMode::Vxlan));
        assert_eq!(
            status(&r, CheckId::CidrConflicts),
            Status::Blocker,
            "{network}"
        );
        let m = messages(&r, CheckId::CidrConflicts);
        assert!(m.contains(clash), "{network}: {m}");
        let remedy = r
            .checks
            .iter()
            .find(|c| c.id == "cidr-conflicts")
            .unwrap()
            .findings[0]
            .remedy
            .clone()
            .unwrap();
        assert!(remedy.contains("flannel.network = \""), "{remedy}");
    }
    // An overlap with the target's own service CIDR is refused by config validation.
    let mut o = opts(BackendKind::Flannel);
    o.target_config = Some((
        flannel_config("172.21.0.0/16", FlannelMode::Vxlan),
        "t".into(),
    ));
    let e = assess(&inv, &o).unwrap_err().to_string();
    assert!(e.contains("service_cidr"), "{e}");
    let mut inv = baseline();
    inv.cluster.other_cluster_cidrs = vec!["192.168.0.0/20".parse().unwrap()];
    let r = run_with(&inv, flannel_config("192.168.0.0/16", FlannelMode::Vxlan));
    assert!(messages(&r, CheckId::CidrConflicts).contains("other cluster range"));
}

#[test]
fn cidr_conflicts_to_terway() {
    let mut inv = baseline();
    inv.cloud.vswitches[0].cidr = "172.20.128.0/20".parse().unwrap(); // inside the cluster CIDR
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(status(&r, CheckId::CidrConflicts), Status::Blocker);
    let m = messages(&r, CheckId::CidrConflicts);
    assert_mentions(&m, &["vswitch/vsw-a", "current cluster network"]);
    assert_eq!(r.migration_path.strategy.as_str(), "new-cluster");
    let mut inv = baseline();
    inv.cloud.vswitches[1].cidr = "192.168.5.0/24".parse().unwrap(); // outside the VPC
    let r = run(&inv, BackendKind::Terway);
    assert!(messages(&r, CheckId::CidrConflicts).contains("not inside the VPC"));
}

#[test]
fn node_limits_cluster_size() {
    let mut inv = idle_nodes(5001);
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(status(&r, CheckId::NodeLimits), Status::Warning);
    inv.cluster.node_limit = Some(15_000);
    quiet(&run(&inv, BackendKind::Terway), CheckId::NodeLimits);
    inv.nodes = (0..15_001)
        .map(|i| node(&format!("n{i}"), "z-a", "ecs.g7.2xlarge"))
        .collect();
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(status(&r, CheckId::NodeLimits), Status::Blocker);
}

#[test]
fn node_limits_route_table_budget_in_vpc_route_mode() {
    let mut inv = idle_nodes(150);
    let c = flannel_config("192.168.0.0/16", FlannelMode::VpcRoute);
    quiet(&run_with(&inv, c.clone()), CheckId::NodeLimits);
    inv.cloud.route_table = Some(RouteTable {
        quota: 200,
        entries_used: 30,
    }); // 180 of 200: over 80%
    assert_eq!(
        status(&run_with(&inv, c.clone()), CheckId::NodeLimits),
        Status::Warning
    );
    inv.cloud.route_table = Some(RouteTable {
        quota: 200,
        entries_used: 60,
    });
    let r = run_with(&inv, c.clone());
    assert_eq!(status(&r, CheckId::NodeLimits), Status::Blocker);
    assert!(messages(&r, CheckId::NodeLimits).contains("140 entries free"));
    // Beyond what any quota allows.
    inv.cloud.route_table = Some(RouteTable {
        quota: 1000,
        entries_used: 900,
    });
    let r = run_with(&inv, c.clone());
    assert!(messages(&r, CheckId::NodeLimits).contains("can ever have"));
    // vxlan needs no route entries.
    quiet(
        &run_with(&inv, flannel_config("192.168.0.0/16", FlannelMode::Vxlan)),
        CheckId::NodeLimits,
    );
}

#[test]
fn flannel_subnets_arithmetic() {
    let mut inv = idle_nodes(16);
    // 172.16.0.0/20 with /24 subnets: 16 subnets for 16 nodes, no room to grow.
    let c = flannel_config("192.168.0.0/20", FlannelMode::Vxlan);
    let r = run_with(&inv, c.clone());
    assert_eq!(status(&r, CheckId::FlannelSubnets), Status::Warning);
    assert!(messages(&r, CheckId::FlannelSubnets).contains("= 16 subnets"));
    inv.nodes.push(node("n16", "z-a", "ecs.g7.2xlarge"));
    assert_eq!(
        status(&run_with(&inv, c), CheckId::FlannelSubnets),
        Status::Blocker
    );
    quiet(
        &run_with(&inv, flannel_config("192.168.0.0/16", FlannelMode::Vxlan)),
        CheckId::FlannelSubnets,
    );
    let mut c = flannel_config("192.168.0.0/16", FlannelMode::Vxlan);
    c.flannel.subnet_len = 29;
    assert_eq!(
        status(&run_with(&inv, c), CheckId::FlannelSubnets),
        Status::Warning
    );
    assert_eq!(
        status(&run(&inv, BackendKind::Terway), CheckId::FlannelSubnets),
        Status::Skipped
    );
}

#[test]
fn host_dependencies() {
    let mut inv = baseline();
    let mut hn = pod("kube-system", "proxy", "n1");
    hn.host_network = true;
    inv.pods.push(hn);
    inv.services.push(Service {
        namespace: "a".into(),
        name: "lb".into(),
        service_type: ServiceType::LoadBalancer,
        node_ports: vec![31000],
        external_traffic_policy: None,
        lb_to_pod: false,
    });
    quiet(&run(&inv, BackendKind::Terway), CheckId::HostDependencies);

    let mut hp = pod("edge", "ingress-1", "n1");
    hp.owner = Some("DaemonSet/ingress".into());
    hp.host_ports = vec![443, 80];
    inv.pods.push(hp);
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(status(&r, CheckId::HostDependencies), Status::Warning);
    let m = messages(&r, CheckId::HostDependencies);
    assert_mentions(&m, &["edge/DaemonSet/ingress", "80, 443"]);
    let remedy = r
        .checks
        .iter()
        .find(|c| c.id == "host-dependencies")
        .unwrap()
        .findings[0]
        .remedy
        .clone()
        .unwrap();
    assert!(remedy.contains("portmap"));

    let mut inv = baseline();
    inv.services.push(Service {
        namespace: "a".into(),
        name: "np".into(),
        service_type: ServiceType::NodePort,
        node_ports: vec![30007],
        external_traffic_policy: None,
        lb_to_pod: false,
    });
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(status(&r, CheckId::HostDependencies), Status::Warning);
    assert!(messages(&r, CheckId::HostDependencies).contains("service/a/np"));
}

#[test]
fn pods_not_running() {
    let mut inv = baseline();
    inv.pods[0].phase = PodPhase::Succeeded;
    quiet(&run(&inv, BackendKind::Terway), CheckId::PodsNotRunning);
    inv.pods[1].phase = PodPhase::Pending;
    inv.pods[1].reason = Some("ImagePullBackOff".into());
    inv.pods[2].phase = PodPhase::Pending;
    inv.pods[2].reason = Some("ImagePullBackOff".into());
    inv.pods[3].phase = PodPhase::Failed;
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(status(&r, CheckId::PodsNotRunning), Status::Warning);
    let c = r
        .checks
        .iter()
        .find(|c| c.id == "pods-not-running")
        .unwrap();
    assert_eq!(c.findings.len(), 2, "grouped by workload, phase and reason");
    assert!(c.summary.starts_with("3 pods"));
}

#[test]
fn ignore_drops_a_check_and_its_findings() {
    let mut inv = baseline();
    inv.pods[1].phase = PodPhase::Pending;
    let mut o = opts(BackendKind::Terway);
    assert_eq!(
        assess(&inv, &o).unwrap().verdict,
        Verdict::ReadyWithWarnings
    );
    o.ignore = vec!["pods-not-running".parse().unwrap()];
    let r = assess(&inv, &o).unwrap();
    assert_eq!(r.verdict, Verdict::Ready);
    assert_eq!(r.ignored, ["pods-not-running"]);
    assert!(r.checks.iter().all(|c| c.id != "pods-not-running"));
    let e = "no-such-check".parse::<CheckId>().unwrap_err().to_string();
    assert_mentions(&e, &["no-such-check", "vswitch-ips"]);
}

#[test]
fn exit_codes_follow_the_verdict_and_fail_on() {
    use unicni_assess::FailOn;
    let mut inv = baseline();
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(r.exit_code(FailOn::Warning), 0);
    inv.pods[1].phase = PodPhase::Pending;
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(
        (r.exit_code(FailOn::Warning), r.exit_code(FailOn::Blocker)),
        (2, 0)
    );
    inv.nodes[0].instance_type = Some("ecs.g6.large".into());
    let r = run(&inv, BackendKind::Terway);
    assert_eq!(r.verdict, Verdict::Blocked);
    assert_eq!(
        (
            r.exit_code(FailOn::Warning),
            r.exit_code(FailOn::Blocker),
            r.exit_code(FailOn::Never)
        ),
        (3, 3, 0)
    );
    assert!(r.summary.blockers > 0 && r.checks.iter().any(|c| c.count(Severity::Blocker) > 0));
}

#[test]
fn target_config_must_match_to_and_be_valid() {
    let inv = baseline();
    let mut o = opts(BackendKind::Terway);
    o.target_config = Some((
        flannel_config("192.168.0.0/16", FlannelMode::Vxlan),
        "t.toml".into(),
    ));
    let e = assess(&inv, &o).unwrap_err().to_string();
    assert_mentions(&e, &["t.toml", "--to"]);
    let mut c = terway_config(TerwayMode::SharedEni);
    c.terway.vswitches = vec!["bad-id".into()];
    o.target_config = Some((c, "t.toml".into()));
    let e = assess(&inv, &o).unwrap_err().to_string();
    assert_mentions(&e, &["terway.vswitches", "bad-id"]);
}

#[test]
fn node_pool_path_moves_stateless_small_pools_first() {
    let mut inv = baseline();
    inv.nodes[0].pool = Some("web".into());
    inv.nodes[1].pool = Some("db".into());
    inv.pods[1].owner = Some("StatefulSet/pg".into()); // on n2 (db)
    let r = run(&inv, BackendKind::Terway);
    let moves: Vec<&str> = r
        .migration_path
        .steps
        .iter()
        .filter(|s| s.action == "move-pool")
        .map(|s| s.detail.as_str())
        .collect();
    assert_eq!(moves.len(), 2);
    assert!(
        moves[0].starts_with("pool web") && moves[1].starts_with("pool db"),
        "{moves:?}"
    );
    let orders: Vec<u32> = r.migration_path.steps.iter().map(|s| s.order).collect();
    assert_eq!(orders, (1..=orders.len() as u32).collect::<Vec<_>>());
}

/// Fails with the whole text unless it names every one of `words`.
fn assert_mentions(text: &str, words: &[&str]) {
    for w in words {
        assert!(text.contains(w), "no {w:?} in: {text}");
    }
}

/// The baseline cluster without pods and with `n` nodes `n0`… in zone `z-a`, all
/// `ecs.g7.2xlarge`.
fn idle_nodes(n: usize) -> Inventory {
    let mut inv = baseline();
    inv.pods.clear();
    inv.nodes = (0..n)
        .map(|i| node(&format!("n{i}"), "z-a", "ecs.g7.2xlarge"))
        .collect();
    inv
}

#[test]
fn node_capacity_in_prefix_mode_counts_prefix_addresses_capped_by_max_pods() {
    // ecs.g7.2xlarge: 45 pods with secondary addresses; prefixes: 3 x 14 x 16 = 672
    // addresses, capped by the kubelet's default 110.
    let mut inv = baseline();
    inv.pods = (0..60).map(|i| pod("a", &format!("p{i}"), "n1")).collect();
    let r = run_with(&inv, terway_config(TerwayMode::SharedEni));
    assert_eq!(status(&r, CheckId::NodeCapacity), Status::Blocker);
    // The report says prefix mode would fit the node.
    assert!(
        messages(&r, CheckId::NodeCapacity).contains("would fit with terway.ip_prefix = true"),
        "{}",
        messages(&r, CheckId::NodeCapacity)
    );
    let mut c = terway_config(TerwayMode::SharedEni);
    c.terway.ip_prefix = true;
    let r = run_with(&inv, c.clone());
    quiet(&r, CheckId::NodeCapacity);
    // 100 of 110: little headroom; 111: over maxPods.
    inv.pods = (0..100).map(|i| pod("a", &format!("p{i}"), "n1")).collect();
    let r = run_with(&inv, c.clone());
    assert_eq!(status(&r, CheckId::NodeCapacity), Status::Warning);
    inv.pods = (0..111).map(|i| pod("a", &format!("p{i}"), "n1")).collect();
    let r = run_with(&inv, c);
    assert_eq!(status(&r, CheckId::NodeCapacity), Status::Blocker);
    assert!(messages(&r, CheckId::NodeCapacity).contains("gives this node 110"));
}

#[test]
fn vswitch_ips_in_prefix_mode_counts_whole_blocks() {
    let mut c = terway_config(TerwayMode::SharedEni);
    c.terway.ip_prefix = true;
    let mut inv = baseline();
    // z-b: n2 runs 5 pods, which take one /28 block (16 addresses). An empty /27 has
    // 28 free addresses but no whole block outside the reserved addresses.
    inv.cloud.vswitches[1].cidr = "10.2.0.0/27".parse().unwrap();
    inv.cloud.vswitches[1].free_ips = 28;
    let r = run_with(&inv, c.clone());
    assert_eq!(status(&r, CheckId::VswitchIps), Status::Blocker);
    assert!(messages(&r, CheckId::VswitchIps).contains("zone/z-b"));
    // Without prefixes the same 28 addresses are plenty.
    let r = run_with(&inv, terway_config(TerwayMode::SharedEni));
    quiet(&r, CheckId::VswitchIps);
    // A /24 with 222 used: one block if packed, none if scattered: a warning saying so.
    inv.cloud.vswitches[1].cidr = "10.2.0.0/24".parse().unwrap();
    inv.cloud.vswitches[1].free_ips = 30;
    let r = run_with(&inv, c.clone());
    assert_eq!(status(&r, CheckId::VswitchIps), Status::Warning);
    assert!(
        messages(&r, CheckId::VswitchIps).contains("[warning] zone/z-b terway.ip_prefix: the nodes here need 1 /28 blocks; the target vSwitches' free addresses hold 0 to 1 whole blocks"),
        "{}",
        messages(&r, CheckId::VswitchIps)
    );
    // An empty /24: 14 whole blocks for one needed.
    inv.cloud.vswitches[1].free_ips = 252;
    let r = run_with(&inv, c);
    quiet(&r, CheckId::VswitchIps);
}

//! An inventory from what `kubectl get nodes,pods,services,networkpolicies -A -o json` (or
//! `-o yaml`) prints: a v1 `List` of Kubernetes objects. What the objects tell is derived
//! as `assess export` derives it from the live API (instance type, zone and pool from the
//! well-known node labels, podCIDR, pod owners, addresses and host ports, services,
//! policies); what they cannot tell (the cloud section, and whatever lives in objects the
//! List lacks) is listed in the inventory's `not_derived`, which the report repeats.

use crate::inventory::{
    Cluster, CurrentNetwork, IpStack, NetworkPolicy, Node, Pod, PodPhase, Service, ServiceType,
};
use crate::{AssessError, Inventory};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};

pub(crate) const ZONE_LABELS: [&str; 2] = [
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];
pub(crate) const TYPE_LABELS: [&str; 2] = [
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
];
pub(crate) const POOL_LABELS: [&str; 3] = [
    "alibabacloud.com/nodepool-id",
    "cloud.google.com/gke-nodepool",
    "node.kubernetes.io/pool",
];
/// Terway: the pod's PodNetworking, or explicit per-pod network annotations.
pub(crate) const POD_NETWORKING: &str = "k8s.aliyun.com/pod-networking";
pub(crate) const POD_NETWORKS: [&str; 2] = [
    "k8s.aliyun.com/pod-networks",
    "k8s.aliyun.com/pod-networks-request",
];
/// Terway: the load balancer sends traffic straight to pod ENIs.
pub(crate) const LB_BACKEND_TYPE: &str = "service.beta.kubernetes.io/backend-type";

/// Flannel writes its backend type on every node it runs on.
const FLANNEL_BACKEND: &str = "flannel.alpha.coreos.com/backend-type";

/// What a kubectl List never holds.
const CLOUD_GAP: &str = "cloud: the vSwitches and their free addresses, and the VPC route \
    table's quota, are not Kubernetes objects; add them under `cloud` (or use `assess \
    export` with cloud access) for the vSwitch and route-table checks";

/// Whether `doc` is a Kubernetes List (`kind: List`, or `NodeList`, `PodList`, ...).
pub fn is_list(doc: &Value) -> bool {
    doc["kind"].as_str().is_some_and(|k| k.ends_with("List")) && doc["items"].is_array()
}

fn s(v: &Value) -> Option<String> {
    v.as_str().map(String::from)
}

fn label(labels: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| s(&labels[*k]))
}

fn parsed<T: std::str::FromStr>(v: &Value) -> Option<T> {
    v.as_str()?.parse().ok()
}

/// The inventory a List describes. `source` names the file, `cluster_name` the cluster in
/// the report (a List does not say which cluster it came from).
pub fn from_list(doc: &Value, source: &str, cluster_name: &str) -> Result<Inventory, AssessError> {
    let items = doc["items"]
        .as_array()
        .ok_or_else(|| AssessError::Invalid {
            path: source.into(),
            field: "items".into(),
            value: doc["items"].to_string(),
            expected: "a list of Kubernetes objects".into(),
        })?;
    let mut by_kind: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let kind = item["kind"].as_str().ok_or_else(|| AssessError::Invalid {
            path: source.into(),
            field: format!("items[{i}].kind"),
            value: item["kind"].to_string(),
            expected: "the object's kind (kubectl prints it for every item)".into(),
        })?;
        by_kind.entry(kind).or_default().push(item);
    }
    let of = |k: &str| by_kind.get(k).map(Vec::as_slice).unwrap_or_default();

    let mut not_derived = vec![CLOUD_GAP.to_string()];
    let (network, network_gaps) =
        detect_network(of("Pod"), of("DaemonSet"), of("ConfigMap"), of("Node"));
    not_derived.extend(network_gaps);
    not_derived
        .push("the service CIDR: not in a List of these kinds; set cluster.service_cidr".into());
    let mut inv = Inventory::new(Cluster {
        name: cluster_name.to_string(),
        kubernetes_version: of("Node")
            .iter()
            .find_map(|n| s(&n["status"]["nodeInfo"]["kubeletVersion"])),
        network,
        service_cidr: None,
        vpc_cidr: None,
        ip_stack: IpStack::Ipv4,
        other_cluster_cidrs: Vec::new(),
        node_limit: None,
    });
    inv.generated = Some(format!("unicni assess, from the kubectl List {source}"));
    inv.nodes = of("Node").iter().map(|n| node(n)).collect();
    let fixed = fixed_pod_networkings(of("PodNetworking"));
    if of("Pod")
        .iter()
        .any(|p| p["metadata"]["annotations"][POD_NETWORKING].is_string())
        && of("PodNetworking").is_empty()
    {
        not_derived.push(
            "fixed pod IPs: pods name terway PodNetworkings, which the List lacks \
             (add `podnetworkings` to the kubectl command)"
                .into(),
        );
    }
    inv.set_pods(of("Pod").iter().map(|p| pod(p, &fixed)));
    inv.services = of("Service").iter().map(|v| service(v)).collect();
    inv.network_policies = of("NetworkPolicy")
        .iter()
        .map(|np| NetworkPolicy {
            namespace: s(&np["metadata"]["namespace"]).unwrap_or_default(),
            name: s(&np["metadata"]["name"]).unwrap_or_default(),
        })
        .collect();
    let used: BTreeSet<&str> = [
        "Node",
        "Pod",
        "Service",
        "NetworkPolicy",
        "DaemonSet",
        "ConfigMap",
        "PodNetworking",
    ]
    .into();
    let ignored: Vec<&str> = by_kind
        .keys()
        .copied()
        .filter(|k| !used.contains(k))
        .collect();
    if !ignored.is_empty() {
        not_derived.push(format!(
            "objects of kind {} are not read by assess and were skipped",
            ignored.join(", ")
        ));
    }
    inv.not_derived = not_derived;
    Ok(inv)
}

pub(crate) fn node(n: &Value) -> Node {
    let labels = &n["metadata"]["labels"];
    let status = &n["status"];
    Node {
        name: s(&n["metadata"]["name"]).unwrap_or_default(),
        zone: label(labels, &ZONE_LABELS),
        instance_type: label(labels, &TYPE_LABELS),
        pool: label(labels, &POOL_LABELS),
        pod_cidr: parsed(&n["spec"]["podCIDR"]),
        internal_ip: status["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
            .and_then(|a| parsed(&a["address"])),
        ready: status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .is_some_and(|c| c["status"] == "True"),
    }
}

fn pod(p: &Value, fixed_networkings: &HashSet<String>) -> Pod {
    let meta = &p["metadata"];
    let spec = &p["spec"];
    let status = &p["status"];
    let annotations = &meta["annotations"];
    let phase = match status["phase"].as_str() {
        Some("Running") => PodPhase::Running,
        Some("Pending") => PodPhase::Pending,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        _ => PodPhase::Unknown,
    };
    // A Running pod whose container waits (CrashLoopBackOff) is not really running.
    let waiting = status["containerStatuses"]
        .as_array()
        .and_then(|cs| cs.iter().find_map(|c| s(&c["state"]["waiting"]["reason"])));
    let (phase, reason) = match (phase, waiting) {
        (PodPhase::Running, Some(w)) => (PodPhase::Pending, Some(w)),
        (ph, w) => (ph, s(&status["reason"]).or(w)),
    };
    let owner = meta["ownerReferences"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["controller"] == true))
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["name"].as_str().unwrap_or_default()
            )
        });
    let host_ports = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .filter_map(|p| p["hostPort"].as_u64())
        .filter_map(|p| u16::try_from(p).ok())
        .collect();
    let pod_networking = s(&annotations[POD_NETWORKING]).or_else(|| {
        POD_NETWORKS
            .iter()
            .find(|k| !annotations[**k].is_null())
            .map(|k| format!("annotation {k}"))
    });
    let fixed_ip = annotations[POD_NETWORKING]
        .as_str()
        .is_some_and(|n| fixed_networkings.contains(n));
    let mut ips: Vec<std::net::IpAddr> = status["podIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| parsed(&i["ip"]))
        .collect();
    if ips.is_empty() {
        ips.extend(parsed::<std::net::IpAddr>(&status["podIP"]));
    }
    Pod {
        namespace: s(&meta["namespace"]).unwrap_or_default(),
        name: s(&meta["name"]).unwrap_or_default(),
        node: s(&spec["nodeName"]),
        phase,
        reason,
        owner,
        host_network: spec["hostNetwork"].as_bool().unwrap_or(false),
        host_ports,
        ips,
        fixed_ip,
        pod_networking,
    }
}

fn service(v: &Value) -> Service {
    let spec = &v["spec"];
    let service_type = match spec["type"].as_str() {
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        _ => ServiceType::ClusterIP,
    };
    Service {
        namespace: s(&v["metadata"]["namespace"]).unwrap_or_default(),
        name: s(&v["metadata"]["name"]).unwrap_or_default(),
        service_type,
        node_ports: spec["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["nodePort"].as_u64())
            .filter_map(|p| u16::try_from(p).ok())
            .collect(),
        external_traffic_policy: s(&spec["externalTrafficPolicy"]),
        lb_to_pod: v["metadata"]["annotations"][LB_BACKEND_TYPE] == "eni",
    }
}

/// Flannel's backend type (its config, or the node annotation) as the inventory's mode.
pub(crate) fn flannel_mode(backend_type: &str) -> &str {
    match backend_type {
        "ali-vpc" | "alloc" => "vpc-route",
        other => other,
    }
}

fn fixed_pod_networkings(items: &[&Value]) -> HashSet<String> {
    items
        .iter()
        .filter(|o| o["spec"]["allocationType"]["type"] == "Fixed")
        .filter_map(|o| s(&o["metadata"]["name"]))
        .collect()
}

/// The network in use: from the DaemonSets when the List has them, else from the owners
/// of the pods they run (`DaemonSet/terway-eniip`, `DaemonSet/kube-flannel-ds`); flannel's
/// mode and network from its `kube-flannel-cfg` ConfigMap when the List has it, else the
/// mode from the backend type flannel writes on every node it runs on.
fn detect_network(
    pods: &[&Value],
    daemonsets: &[&Value],
    configmaps: &[&Value],
    nodes: &[&Value],
) -> (CurrentNetwork, Vec<String>) {
    let mut names: BTreeSet<String> = daemonsets
        .iter()
        .filter_map(|d| s(&d["metadata"]["name"]))
        .collect();
    names.extend(pods.iter().filter_map(|p| {
        p["metadata"]["ownerReferences"]
            .as_array()?
            .iter()
            .find(|o| o["kind"] == "DaemonSet")
            .and_then(|o| s(&o["name"]))
    }));
    let has = |x: &str| names.iter().any(|n| n.contains(x));
    let mut gaps = Vec::new();
    let mut net = CurrentNetwork {
        backend: "unknown".into(),
        mode: None,
        cluster_cidr: None,
        node_subnet_len: None,
    };
    if has("terway") {
        net.backend = "terway".into();
        net.mode = Some(
            if names.contains("terway-eni") {
                "exclusive-eni"
            } else {
                "shared-eni"
            }
            .into(),
        );
    } else if has("flannel") {
        net.backend = "flannel".into();
        let conf = configmaps
            .iter()
            .find(|c| c["metadata"]["name"] == "kube-flannel-cfg")
            .and_then(|c| c["data"]["net-conf.json"].as_str())
            .and_then(|t| serde_json::from_str::<Value>(t).ok());
        match conf {
            Some(v) => {
                net.cluster_cidr = parsed(&v["Network"]);
                net.node_subnet_len = v["SubnetLen"]
                    .as_u64()
                    .and_then(|l| u8::try_from(l).ok())
                    .or(Some(24));
                net.mode = Some(
                    flannel_mode(v["Backend"]["Type"].as_str().unwrap_or("vxlan")).to_string(),
                );
            }
            None => {
                net.mode = nodes
                    .iter()
                    .find_map(|n| s(&n["metadata"]["annotations"][FLANNEL_BACKEND]))
                    .map(|t| flannel_mode(&t).to_string());
                gaps.push(
                    "flannel's cluster network and subnet length: they live in the ConfigMap \
                     kube-flannel-cfg, which the List lacks (add `configmap/kube-flannel-cfg` \
                     of its namespace to the kubectl command, or set cluster.network)"
                        .into(),
                );
            }
        }
    } else if let Some(other) = ["calico", "cilium", "weave", "kube-router", "antrea"]
        .into_iter()
        .find(|p| has(p))
    {
        net.backend = other.into();
    } else {
        gaps.push(
            "the current network plugin: no pod in the List belongs to a known CNI \
             DaemonSet; set cluster.network.backend"
                .into(),
        );
    }
    (net, gaps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_list_of_nodes_and_pods_becomes_an_inventory() {
        let doc = json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {"apiVersion": "v1", "kind": "Node",
                 "metadata": {"name": "n1", "labels": {
                     "topology.kubernetes.io/zone": "cn-hangzhou-a",
                     "node.kubernetes.io/instance-type": "ecs.g7.large",
                     "alibabacloud.com/nodepool-id": "np-1"},
                     "annotations": {"flannel.alpha.coreos.com/backend-type": "host-gw"}},
                 "spec": {"podCIDR": "10.244.1.0/24"},
                 "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.10"}],
                            "conditions": [{"type": "Ready", "status": "True"}]}},
                {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"namespace": "kube-system", "name": "kube-flannel-ds-x",
                              "ownerReferences": [{"kind": "DaemonSet", "name": "kube-flannel-ds",
                                                   "controller": true}]},
                 "spec": {"nodeName": "n1", "hostNetwork": true, "containers": []},
                 "status": {"phase": "Running", "podIP": "192.168.0.10"}},
                {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"namespace": "a", "name": "web-0",
                              "ownerReferences": [{"kind": "StatefulSet", "name": "web",
                                                   "controller": true}]},
                 "spec": {"nodeName": "n1", "containers": [{"ports": [{"hostPort": 8080}]}]},
                 "status": {"phase": "Running",
                            "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}]}},
                {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}}
            ]
        });
        assert!(is_list(&doc));
        let inv = from_list(&doc, "dump.json", "dump").unwrap();
        let n = &inv.nodes[0];
        assert_eq!(n.zone.as_deref(), Some("cn-hangzhou-a"));
        assert_eq!(n.instance_type.as_deref(), Some("ecs.g7.large"));
        assert_eq!(n.pool.as_deref(), Some("np-1"));
        assert_eq!(n.pod_cidr.unwrap().to_string(), "10.244.1.0/24");
        assert!(n.ready);
        assert_eq!(inv.cluster.network.backend, "flannel");
        assert_eq!(inv.cluster.network.mode.as_deref(), Some("host-gw"));
        assert_eq!(inv.cluster.ip_stack, IpStack::Dual);
        let web = &inv.pods[1];
        assert_eq!(web.owner.as_deref(), Some("StatefulSet/web"));
        assert_eq!(web.host_ports, vec![8080]);
        assert_eq!(web.ips.len(), 2);
        assert!(inv.pods[0].host_network);
        let gaps = inv.not_derived.join("\n");
        assert!(gaps.contains("vSwitches"), "{gaps}");
        assert!(gaps.contains("kube-flannel-cfg"), "{gaps}");
        assert!(gaps.contains("Event"), "{gaps}");
    }

    #[test]
    fn an_item_without_kind_is_named() {
        let doc = json!({"kind": "List", "items": [{"metadata": {}}]});
        let e = from_list(&doc, "d.json", "d").unwrap_err().to_string();
        assert!(e.contains("items[0].kind"), "{e}");
    }
}

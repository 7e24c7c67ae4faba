//! Building an inventory from a live cluster through the Kubernetes API (feature `live`).
//!
//! Only reads: nodes, pods, services, network policies, the flannel / terway config maps
//! and DaemonSets that tell the current network, ServiceCIDRs, and terway PodNetworkings
//! when that CRD exists. The cloud section (vSwitch free addresses, route-table budget)
//! is not in the Kubernetes API: it is left empty for the operator (or a cloud client)
//! to fill in.

use crate::inventory::{
    Cluster, CurrentNetwork, IpStack, NetworkPolicy as InvPolicy, Node as InvNode, Pod as InvPod,
    PodPhase, Service as InvService, ServiceType,
};
use crate::{AssessError, Inventory};
use ipnet::IpNet;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use k8s_openapi::api::networking::v1::{NetworkPolicy, ServiceCIDR};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectList};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::path::Path;

/// Objects per list request: big clusters are read in pages.
const PAGE: u32 = 500;

use crate::kubectl::{
    LB_BACKEND_TYPE, POD_NETWORKING, POD_NETWORKS, POOL_LABELS, TYPE_LABELS, ZONE_LABELS,
};

fn live_err(what: &str, e: impl std::fmt::Display) -> AssessError {
    AssessError::Live(format!("{what}: {e}"))
}

/// A client from `kubeconfig`, or from $KUBECONFIG / ~/.kube/config / in-cluster when None.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, AssessError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| live_err(&format!("reading kubeconfig {}", path.display()), e))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| live_err(&format!("kubeconfig {}", path.display()), e))?
        }
        None => Config::infer().await.map_err(|e| {
            live_err(
                "finding a kubeconfig ($KUBECONFIG, ~/.kube/config, in-cluster)",
                e,
            )
        })?,
    };
    Client::try_from(config).map_err(|e| live_err("creating the Kubernetes client", e))
}

/// The cluster `kubeconfig` (or $KUBECONFIG / ~/.kube/config / in-cluster when None)
/// points at, read into an inventory named after the kubeconfig's current context.
pub async fn inventory(kubeconfig: Option<&Path>) -> Result<Inventory, AssessError> {
    let client = client(kubeconfig).await?;
    export(client, &cluster_name(kubeconfig)).await
}

/// The kubeconfig's current context names the cluster in the report.
fn cluster_name(kubeconfig: Option<&Path>) -> String {
    let kc = match kubeconfig {
        Some(p) => Kubeconfig::read_from(p).ok(),
        None => Kubeconfig::read().ok(),
    };
    kc.and_then(|k| k.current_context)
        .unwrap_or_else(|| "cluster".into())
}

/// Every object of `api`, following continue tokens.
async fn list_all<K>(api: &Api<K>, what: &str) -> Result<Vec<K>, AssessError>
where
    K: Clone + DeserializeOwned + Debug,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(PAGE);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page: ObjectList<K> = api.list(&lp).await.map_err(|e| {
            live_err(
                &format!("listing {what} (the kubeconfig's user needs list permission)"),
                e,
            )
        })?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

/// Like [`list_all`], but an API the server does not serve (404) or forbids (403) is empty:
/// the objects are optional evidence.
async fn list_optional<K>(api: &Api<K>, what: &str) -> Result<Vec<K>, AssessError>
where
    K: Clone + DeserializeOwned + Debug,
{
    match api.list(&ListParams::default().limit(PAGE)).await {
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 403 => Ok(Vec::new()),
        Err(e) => Err(live_err(&format!("listing {what}"), e)),
        Ok(_) => list_all(api, what).await,
    }
}

async fn get_optional<K>(api: &Api<K>, name: &str) -> Result<Option<K>, AssessError>
where
    K: Clone + DeserializeOwned + Debug,
{
    match api.get_opt(name).await {
        Ok(v) => Ok(v),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(None),
        Err(e) => Err(live_err(&format!("reading {name}"), e)),
    }
}

fn label<'a>(labels: &'a Option<BTreeMap<String, String>>, keys: &[&str]) -> Option<&'a String> {
    let labels = labels.as_ref()?;
    keys.iter().find_map(|k| labels.get(*k))
}

/// Reads the whole cluster into an inventory.
pub async fn export(client: Client, cluster_name: &str) -> Result<Inventory, AssessError> {
    let network = detect_network(&client).await?;
    let nodes: Vec<Node> = list_all(&Api::all(client.clone()), "nodes").await?;
    let pods: Vec<Pod> = list_all(&Api::all(client.clone()), "pods").await?;
    let services: Vec<Service> = list_all(&Api::all(client.clone()), "services").await?;
    let policies: Vec<NetworkPolicy> =
        list_optional(&Api::all(client.clone()), "networkpolicies").await?;
    let service_cidrs: Vec<ServiceCIDR> =
        list_optional(&Api::all(client.clone()), "servicecidrs").await?;
    let fixed_networkings = fixed_pod_networkings(&client).await?;

    let service_cidr = service_cidrs
        .iter()
        .filter_map(|s| s.spec.as_ref()?.cidrs.as_ref())
        .flatten()
        .find_map(|c| c.parse::<IpNet>().ok().filter(|n| n.addr().is_ipv4()));

    let mut inv = Inventory::new(Cluster {
        name: cluster_name.to_string(),
        kubernetes_version: client.apiserver_version().await.ok().map(|v| v.git_version),
        network,
        service_cidr,
        vpc_cidr: None,
        ip_stack: IpStack::Ipv4,
        other_cluster_cidrs: Vec::new(),
        node_limit: None,
    });
    inv.generated = Some("unicni assess export, from the Kubernetes API".into());

    inv.nodes = nodes.into_iter().map(node).collect();
    inv.set_pods(pods.into_iter().map(|p| pod(p, &fixed_networkings)));
    inv.services = services.into_iter().map(service).collect();
    inv.network_policies = policies
        .into_iter()
        .map(|np| InvPolicy {
            namespace: np.metadata.namespace.unwrap_or_default(),
            name: np.metadata.name.unwrap_or_default(),
        })
        .collect();
    Ok(inv)
}

fn node(n: Node) -> InvNode {
    let labels = &n.metadata.labels;
    let status = n.status.as_ref();
    InvNode {
        name: n.metadata.name.clone().unwrap_or_default(),
        zone: label(labels, &ZONE_LABELS).cloned(),
        instance_type: label(labels, &TYPE_LABELS).cloned(),
        pool: label(labels, &POOL_LABELS).cloned(),
        pod_cidr: n
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_ref())
            .and_then(|c| c.parse().ok()),
        internal_ip: status
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse().ok()),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True"),
    }
}

fn pod(p: Pod, fixed_networkings: &HashSet<String>) -> InvPod {
    let annotations = p.metadata.annotations.clone().unwrap_or_default();
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Running") => PodPhase::Running,
        Some("Pending") => PodPhase::Pending,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        _ => PodPhase::Unknown,
    };
    // A Running pod whose container waits (CrashLoopBackOff) is not really running.
    let waiting = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        });
    let (phase, reason) = match (phase, waiting) {
        (PodPhase::Running, Some(w)) => (PodPhase::Pending, Some(w)),
        (ph, w) => (ph, status.and_then(|s| s.reason.clone()).or(w)),
    };
    let owner = p
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.iter().find(|o| o.controller == Some(true)))
        .map(|o| format!("{}/{}", o.kind, o.name));
    let host_ports = spec
        .map(|s| {
            s.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .filter_map(|p| p.host_port)
                .filter_map(|p| u16::try_from(p).ok())
                .collect()
        })
        .unwrap_or_default();
    let pod_networking = annotations.get(POD_NETWORKING).cloned().or_else(|| {
        POD_NETWORKS
            .iter()
            .find(|k| annotations.contains_key(**k))
            .map(|k| format!("annotation {k}"))
    });
    let fixed_ip = annotations
        .get(POD_NETWORKING)
        .is_some_and(|n| fixed_networkings.contains(n));
    InvPod {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()),
        phase,
        reason,
        owner,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        host_ports,
        ips: status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| ips.iter().filter_map(|i| i.ip.parse().ok()).collect())
            .unwrap_or_default(),
        fixed_ip,
        pod_networking,
    }
}

fn service(s: Service) -> InvService {
    let spec = s.spec.as_ref();
    let service_type = match spec.and_then(|s| s.type_.as_deref()) {
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        _ => ServiceType::ClusterIP,
    };
    InvService {
        namespace: s.metadata.namespace.clone().unwrap_or_default(),
        name: s.metadata.name.clone().unwrap_or_default(),
        service_type,
        node_ports: spec
            .and_then(|s| s.ports.as_ref())
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p.node_port)
                    .filter_map(|p| u16::try_from(p).ok())
                    .collect()
            })
            .unwrap_or_default(),
        external_traffic_policy: spec.and_then(|s| s.external_traffic_policy.clone()),
        lb_to_pod: s
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LB_BACKEND_TYPE))
            .is_some_and(|v| v == "eni"),
    }
}

/// Names of terway PodNetworkings that keep pod IPs fixed (`allocationType.type: Fixed`).
async fn fixed_pod_networkings(client: &Client) -> Result<HashSet<String>, AssessError> {
    let gvk = GroupVersionKind::gvk("network.alibabacloud.com", "v1beta1", "PodNetworking");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "podnetworkings");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let list = list_optional(&api, "podnetworkings.network.alibabacloud.com").await?;
    Ok(list
        .into_iter()
        .filter(|o| o.data["spec"]["allocationType"]["type"] == "Fixed")
        .filter_map(|o| o.metadata.name)
        .collect())
}

/// The network in use, from the DaemonSets and the plugins' config maps.
async fn detect_network(client: &Client) -> Result<CurrentNetwork, AssessError> {
    let daemonsets: Vec<DaemonSet> = list_all(&Api::all(client.clone()), "daemonsets").await?;
    let names: Vec<String> = daemonsets
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .collect();
    let has = |s: &str| names.iter().any(|n| n.contains(s));
    let mut net = CurrentNetwork {
        backend: "unknown".into(),
        mode: None,
        cluster_cidr: None,
        node_subnet_len: None,
    };
    if has("terway") {
        net.backend = "terway".into();
        net.mode = Some(
            if names.iter().any(|n| n == "terway-eni") {
                "exclusive-eni"
            } else {
                "shared-eni"
            }
            .into(),
        );
    } else if has("flannel") {
        net.backend = "flannel".into();
        for ns in ["kube-flannel", "kube-system"] {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            let Some(cm) = get_optional(&api, "kube-flannel-cfg").await? else {
                continue;
            };
            let Some(conf) = cm.data.as_ref().and_then(|d| d.get("net-conf.json")) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(conf).map_err(|e| {
                live_err(
                    &format!("{ns}/kube-flannel-cfg net-conf.json is not JSON"),
                    e,
                )
            })?;
            net.cluster_cidr = v["Network"].as_str().and_then(|c| c.parse().ok());
            net.node_subnet_len = v["SubnetLen"]
                .as_u64()
                .and_then(|l| u8::try_from(l).ok())
                .or(Some(24));
            net.mode = Some(
                crate::kubectl::flannel_mode(v["Backend"]["Type"].as_str().unwrap_or("vxlan"))
                    .to_string(),
            );
            break;
        }
    } else if let Some(other) = ["calico", "cilium", "weave", "kube-router", "antrea"]
        .into_iter()
        .find(|p| has(p))
    {
        net.backend = other.into();
    }
    Ok(net)
}

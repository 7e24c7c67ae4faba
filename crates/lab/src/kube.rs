//! `--store kubernetes`: the lab's API server and the lab as the control plane.
//!
//! The API server is `unicni kube-sim` inside the VPC namespace (reachable from every node
//! over the underlay, like the etcd server), its CA, tokens and kubeconfig under
//! `<root>/kube`. The lab then does what the control plane and the kubelets would: it
//! registers a Node per cluster node (addresses, well-known labels, the instance type and
//! zone the cloud's metadata service reports), assigns each flannel node the next free
//! /[`NODE_SUBNET_LEN`] of the cluster CIDR as `spec.podCIDR` (the controller manager's
//! range allocator), creates a Pod before its sandbox's CNI ADD, records its addresses in
//! `status` after it and deletes it after CNI DEL. With `--policy` the lab's
//! NetworkPolicies are API objects too.
//!
//! Agents (and `unicni install`) use the in-cluster configuration: KUBERNETES_SERVICE_HOST
//! and _PORT in their environment and the service-account token and CA at the fixed path
//! kube-rs reads, bind-mounted there inside the mount namespace `ip netns exec` gives each
//! of them (its root is a slave of the host's: the host sees nothing, the agent still sees
//! new netns files and the lab's bpffs).
//!
//! The lab's own API calls run on a fresh thread that entered the VPC namespace, with a
//! current-thread runtime of its own (never a `setns` on a tokio worker).

use super::checks::CheckResult;
use super::policy::Role;
use super::topology::{
    Backend, IpStack, Lab, LabState, PodState, CLOUD_PORT, CLUSTER_CIDR, CLUSTER_CIDR6, KUBE_PORT,
    NODE_SUBNET_LEN, NODE_SUBNET_LEN6, OTHER, POD_NAMESPACE,
};
use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where a pod finds its service account (kube-rs reads this fixed path in-cluster).
const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The label the lab puts on the NetworkPolicies it writes: which of its policy files
/// (`policy.yaml`, `bench.yaml`) they came from, so that writing a file replaces its set.
const FILE_LABEL: &str = "lab.unicni.io/file";
/// The cloud metadata service's token headers (the vendor's names).
const METADATA_TOKEN_TTL: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
const METADATA_TOKEN: &str = "X-aliyun-ecs-metadata-token";
/// The pods' namespaces (the policy matrix's roles): `team` labels select them.
const NAMESPACES: [(&str, &[(&str, &str)]); 2] = [
    ("shop", &[("team", "shop")]),
    ("lab", &[("team", "lab"), ("purpose", "test")]),
];

impl Lab {
    pub fn kube_dir(&self) -> PathBuf {
        self.root.join("kube")
    }
    /// The admin kubeconfig `unicni kube-sim` wrote (what `kubectl` uses).
    pub fn kubeconfig(&self) -> PathBuf {
        self.kube_dir().join("kubeconfig")
    }
    pub fn kube_server(&self) -> String {
        format!("{}:{KUBE_PORT}", self.outside_ip())
    }
    /// Whether this lab keeps its state in the Kubernetes API (`--store kubernetes`):
    /// decided by the directory `lab up` creates for the API server, so that pods and
    /// policies know without the lab state at hand.
    pub fn on_kube(&self) -> bool {
        self.kube_dir().is_dir()
    }

    /// The Kubernetes namespace of a lab pod: in the API, the policy matrix's role
    /// namespace (`shop` or `lab`); the manifest files of the other stores say `lab`.
    pub fn pod_namespace(&self, pod: &PodState) -> &'static str {
        if self.on_kube() && pod.node != OTHER {
            Role::of(pod).namespace()
        } else {
            POD_NAMESPACE
        }
    }

    /// Starts `unicni kube-sim` in the VPC namespace and waits for its `ready` file.
    pub fn start_kube_sim(&self) -> Result<u32> {
        let dir = self.kube_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let log_path = self.root.join("kube-sim.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.vpc_ns()])
            .arg(&self.exe)
            .arg("kube-sim")
            .arg("--listen")
            .arg(self.kube_server())
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("start unicni kube-sim")?;
        let pid = child.id();
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until && super::nodes::alive(pid) {
            if dir.join("ready").exists() {
                return Ok(pid);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        super::nodes::terminate(pid, Duration::from_secs(2));
        bail!(
            "the API server (unicni kube-sim) did not write {} within 15s; see {}",
            dir.join("ready").display(),
            log_path.display()
        )
    }

    /// Runs `f` with a client of the lab's API server (admin kubeconfig) on a thread in
    /// the VPC namespace.
    pub fn api<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce(kube::Client) -> Fut + Send,
        Fut: Future<Output = Result<T>>,
    {
        let ns = unicni_net::NetNs::open(Path::new(&format!("/var/run/netns/{}", self.vpc_ns())))?;
        let kubeconfig = self.kubeconfig();
        ns.run(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start a tokio runtime for the lab's API calls")?;
            rt.block_on(async move {
                let client = unicni_store::kube::client(Some(&kubeconfig))
                    .await
                    .map_err(|e| anyhow!(e))
                    .with_context(|| {
                        format!("connect to the lab's API server {}", self.kube_server())
                    })?;
                f(client).await.with_context(|| {
                    format!(
                        "the lab's API server {} (its log: {})",
                        self.kube_server(),
                        self.root.join("kube-sim.log").display()
                    )
                })
            })
        })?
    }

    /// The command prefix that runs a program in node `i`'s namespace as a pod of the
    /// cluster would run: with the in-cluster configuration when the lab is on the
    /// Kubernetes store (the second cluster's node keeps its file store).
    pub fn node_command(&self, i: usize) -> Result<Command> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.node_ns(i)]);
        if !self.on_kube() || i == OTHER {
            return Ok(c);
        }
        // The mount point must exist to mount on: an empty directory in /run, left in
        // place (another lab may be using it); the mount itself is the agent's alone.
        std::fs::create_dir_all(SERVICE_ACCOUNT_MOUNT)
            .with_context(|| format!("create the mount point {SERVICE_ACCOUNT_MOUNT}"))?;
        c.env("KUBERNETES_SERVICE_HOST", self.outside_ip())
            .env("KUBERNETES_SERVICE_PORT", KUBE_PORT.to_string())
            // `ip netns exec` gave the command a mount namespace of its own whose root is
            // a slave of the host's: the bind mount stays in it. sh execs the program (the
            // PID stays the program's).
            .args([
                "sh",
                "-c",
                &format!("mount --bind \"$0\" {SERVICE_ACCOUNT_MOUNT} && exec \"$@\""),
            ])
            .arg(self.kube_dir().join("serviceaccount"));
        Ok(c)
    }

    /// The namespaces of the lab's pods, with the labels the policy recipes select.
    pub fn create_namespaces(&self) -> Result<()> {
        self.api(|client| async move {
            let api: Api<Namespace> = Api::all(client);
            for (name, labels) in NAMESPACES {
                let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
                let ns: Namespace = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels},
                }))?;
                create_or_keep(&api, &ns, &format!("namespace {name}")).await?;
            }
            Ok(())
        })
    }

    /// Node `i`'s instance type and zone from the cloud's metadata service, asked from the
    /// node itself (what the cloud controller manager labels a Node with).
    fn instance_labels(&self, i: usize) -> Result<BTreeMap<String, String>> {
        let (ns, addr) = (
            self.node_ns(i),
            format!("{}:{CLOUD_PORT}", self.outside_ip()),
        );
        let base = format!("/instances/{}/latest", self.instance_id(i));
        let reply = self.http(
            &ns,
            &addr,
            &format!(
                "PUT {base}/api/token HTTP/1.1\r\nHost: metadata\r\n{}: 300\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n",
                METADATA_TOKEN_TTL
            ),
        )?;
        if !reply.starts_with("HTTP/1.1 200") {
            bail!("node {i}: the metadata service refused a token: {reply}");
        }
        let token = super::nodes::http_body(&reply);
        let get = |what: &str| -> Result<String> {
            let r = self.http(
                &ns,
                &addr,
                &format!(
                    "GET {base}/meta-data/{what} HTTP/1.1\r\nHost: metadata\r\n{}: {token}\r\n\
                     Connection: close\r\n\r\n",
                    METADATA_TOKEN
                ),
            )?;
            if !r.starts_with("HTTP/1.1 200") {
                bail!("node {i}: metadata {what}: {r}");
            }
            Ok(super::nodes::http_body(&r))
        };
        Ok(BTreeMap::from([
            (
                "node.kubernetes.io/instance-type".to_string(),
                get("instance/instance-type")?,
            ),
            ("topology.kubernetes.io/zone".to_string(), get("zone-id")?),
            (
                "topology.kubernetes.io/region".to_string(),
                get("region-id")?,
            ),
        ]))
    }

    /// Registers node `i` as its kubelet would (labels, addresses), then, for flannel,
    /// assigns it the next free subnet of the cluster CIDR as `spec.podCIDR` as the
    /// controller manager's allocator would. Returns the podCIDR. A Node that exists
    /// already (an agent restarted, `add-node` repeated) keeps what it has.
    pub fn register_node(&self, i: usize, st: &LabState) -> Result<Option<String>> {
        let name = self.node_name(i);
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), name.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
        ]);
        if st.mode.needs_cloud() {
            labels.extend(self.instance_labels(i)?);
        }
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
        }))?;
        let status = json!({"status": {
            "addresses": [
                {"type": "InternalIP", "address": self.node_ip(i)},
                {"type": "Hostname", "address": name},
            ],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        }});
        let flannel = st.backend == Backend::Flannel;
        let dual = st.ip_stack == IpStack::Dual;
        self.api(|client| async move {
            let api: Api<Node> = Api::all(client);
            create_or_keep(&api, &node, &format!("node {name}")).await?;
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .with_context(|| format!("record the addresses of node {name}"))?;
            if !flannel {
                return Ok(None);
            }
            let nodes = api
                .list(&ListParams::default())
                .await
                .context("list nodes")?;
            if let Some(have) = nodes
                .items
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(name.as_str()))
                .and_then(|n| n.spec.as_ref()?.pod_cidr.clone())
            {
                return Ok(Some(have));
            }
            // Each family is allocated on its own, as the controller manager's dual-stack
            // range allocator does; podCIDRs lists IPv4 first.
            let used: BTreeSet<String> = nodes
                .items
                .iter()
                .filter_map(|n| n.spec.as_ref()?.pod_cidrs.clone())
                .flatten()
                .chain(
                    nodes
                        .items
                        .iter()
                        .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone()),
                )
                .collect();
            let cidr = next_free(CLUSTER_CIDR, NODE_SUBNET_LEN, &used)?;
            let mut cidrs = vec![cidr.clone()];
            if dual {
                cidrs.push(next_free(CLUSTER_CIDR6, NODE_SUBNET_LEN6, &used)?);
            }
            let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": cidrs}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("assign podCIDR {cidr} to node {name}"))?;
            Ok(Some(cidr))
        })
    }

    /// The Pod object of `pod` as the scheduler leaves it (bound to its node), before its
    /// sandbox exists: namespace and labels of its role, its manifest's annotations and
    /// owner, the container ports the policy recipes name.
    pub fn create_pod_object(&self, pod: &PodState) -> Result<()> {
        let namespace = self.pod_namespace(pod);
        let mut metadata = json!({
            "name": pod.name,
            "namespace": namespace,
            "labels": {"app": Role::of(pod).app()},
            "annotations": pod.annotations,
        });
        if let Some(kind) = &pod.owner_kind {
            metadata["ownerReferences"] = json!([{
                "apiVersion": "apps/v1",
                "kind": kind,
                "name": pod.name.rsplit_once('-').map(|(a, _)| a).unwrap_or(&pod.name),
                "uid": format!("uid-owner-{}", pod.name),
                "controller": true,
            }]);
        }
        let object: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": metadata,
            "spec": {
                "nodeName": self.node_name(pod.node),
                "containers": [{
                    "name": "c",
                    "image": "registry.k8s.io/pause:3.10",
                    "ports": [
                        {"name": "http", "containerPort": 8080},
                        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                    ],
                }],
            },
        }))?;
        let what = format!("pod {namespace}/{}", pod.name);
        self.api(|client| async move {
            Api::<Pod>::namespaced(client, namespace)
                .create(&PostParams::default(), &object)
                .await
                .with_context(|| format!("create {what}"))?;
            Ok(())
        })
    }

    /// After CNI ADD: the pod's addresses in its status, as its kubelet reports them.
    pub fn record_pod_ips(&self, pod: &PodState) -> Result<()> {
        let namespace = self.pod_namespace(pod);
        let ips: Vec<Value> = std::iter::once(&pod.ip)
            .chain(pod.ip6.iter())
            .map(|ip| json!({"ip": ip}))
            .collect();
        let status = json!({"status": {
            "phase": "Running",
            "hostIP": self.node_ip(pod.node),
            "podIP": pod.ip,
            "podIPs": ips,
        }});
        let name = pod.name.clone();
        self.api(|client| async move {
            Api::<Pod>::namespaced(client, namespace)
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .with_context(|| format!("record the addresses of pod {namespace}/{name}"))?;
            Ok(())
        })
    }

    /// After CNI DEL: the Pod is gone (an absent one is fine). Grace period 0, as the
    /// kubelet's final delete once the sandbox is gone: the name is free at once for the
    /// re-created pod.
    pub fn delete_pod_object(&self, pod: &PodState) -> Result<()> {
        let namespace = self.pod_namespace(pod);
        let name = pod.name.clone();
        self.api(|client| async move {
            let now = DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            };
            match Api::<Pod>::namespaced(client, namespace)
                .delete(&name, &now)
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(anyhow!(e).context(format!("delete pod {namespace}/{name}"))),
            }
        })
    }

    /// Makes the NetworkPolicies of the lab's policy file `file` exactly those of `yaml`
    /// (the manifests directory's semantics, on the API): new ones created, changed ones
    /// replaced, ones no longer there deleted. Policies of other origin (kubectl) stay.
    pub fn apply_policies(&self, file: &str, yaml: &str) -> Result<()> {
        let mut wanted = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let v: Value = serde::Deserialize::deserialize(doc)
                .with_context(|| format!("parse the lab's {file}"))?;
            if v.is_null() {
                continue;
            }
            let mut p: NetworkPolicy = serde_json::from_value(v)
                .with_context(|| format!("a NetworkPolicy of the lab's {file}"))?;
            p.metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(FILE_LABEL.into(), file.into());
            wanted.push(p);
        }
        let file = file.to_string();
        self.api(|client| async move {
            let all: Api<NetworkPolicy> = Api::all(client.clone());
            let have = all
                .list(&ListParams::default().labels(&format!("{FILE_LABEL}={file}")))
                .await
                .context("list the lab's NetworkPolicies")?;
            let key = |p: &NetworkPolicy| {
                (
                    p.metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                    p.metadata.name.clone().unwrap_or_default(),
                )
            };
            let keep: BTreeSet<(String, String)> = wanted.iter().map(key).collect();
            for p in &have.items {
                let (ns, name) = key(p);
                if !keep.contains(&(ns.clone(), name.clone())) {
                    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
                    match api.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => {
                            return Err(
                                anyhow!(e).context(format!("delete NetworkPolicy {ns}/{name}"))
                            )
                        }
                    }
                }
            }
            for mut p in wanted {
                let (ns, name) = key(&p);
                let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
                let old = have
                    .items
                    .iter()
                    .find(|o| key(o) == (ns.clone(), name.clone()));
                match old {
                    Some(o) if o.spec == p.spec && o.metadata.labels == p.metadata.labels => {}
                    Some(o) => {
                        p.metadata.resource_version = o.metadata.resource_version.clone();
                        api.replace(&name, &PostParams::default(), &p)
                            .await
                            .with_context(|| format!("replace NetworkPolicy {ns}/{name}"))?;
                    }
                    None => {
                        api.create(&PostParams::default(), &p)
                            .await
                            .with_context(|| format!("create NetworkPolicy {ns}/{name}"))?;
                    }
                }
            }
            Ok(())
        })
    }

    /// `lab up --services` on the Kubernetes store: creates or replaces each Service and
    /// EndpointSlice of `yaml` as the control plane (the endpoint controller) would.
    pub fn apply_services(&self, yaml: &str) -> Result<()> {
        let mut services = Vec::new();
        let mut slices = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let v: Value =
                serde::Deserialize::deserialize(doc).context("parse the lab's Services")?;
            match v["kind"].as_str() {
                Some("Service") => services
                    .push(serde_json::from_value::<Service>(v).context("a Service of the lab")?),
                Some("EndpointSlice") => slices.push(
                    serde_json::from_value::<EndpointSlice>(v)
                        .context("an EndpointSlice of the lab")?,
                ),
                _ => {}
            }
        }
        self.api(|client| async move {
            for s in services {
                upsert(&client, s).await?;
            }
            for s in slices {
                upsert(&client, s).await?;
            }
            Ok(())
        })
    }

    /// `lab check` on the Kubernetes store: what the API says matches what the lab saw:
    /// every flannel node's `spec.podCIDR` is the subnet its agent uses and its agent
    /// annotated it; every node carries its address (and, on the cloud, its instance
    /// type and zone); every pod's `status.podIPs` are the addresses CNI ADD gave it.
    pub fn api_check(&self, st: &LabState) -> CheckResult {
        let want_nodes: Vec<(String, String, String)> = st
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.ip.clone(), n.subnet.clone()))
            .collect();
        let want_pods: Vec<(&'static str, String, Vec<String>)> = st
            .pods
            .iter()
            .map(|p| {
                (
                    self.pod_namespace(p),
                    p.name.clone(),
                    std::iter::once(p.ip.clone()).chain(p.ip6.clone()).collect(),
                )
            })
            .collect();
        let (flannel, cloud) = (st.backend == Backend::Flannel, st.mode.needs_cloud());
        let (n_nodes, n_pods) = (want_nodes.len(), want_pods.len());
        let r = self.api(|client| async move {
            let mut wrong = Vec::new();
            let nodes: Api<Node> = Api::all(client.clone());
            for (name, ip, subnet) in want_nodes {
                let Some(n) = nodes.get_opt(&name).await? else {
                    wrong.push(format!("node {name} is not in the API"));
                    continue;
                };
                let cidr = n
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.clone())
                    .unwrap_or_default();
                let ann = n.metadata.annotations.clone().unwrap_or_default();
                let labels = n.metadata.labels.clone().unwrap_or_default();
                let internal = n
                    .status
                    .as_ref()
                    .and_then(|s| s.addresses.as_ref())
                    .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                    .map(|a| a.address.clone())
                    .unwrap_or_default();
                if internal != ip {
                    wrong.push(format!("node {name}: InternalIP {internal:?}, not {ip}"));
                }
                if flannel {
                    if cidr != subnet {
                        wrong.push(format!(
                            "node {name}: podCIDR {cidr:?}, its agent uses {subnet}"
                        ));
                    }
                    if ann.get(unicni_store::kube::ANN_PUBLIC_IP) != Some(&ip) {
                        wrong.push(format!(
                            "node {name}: annotation {} is {:?}, not {ip}",
                            unicni_store::kube::ANN_PUBLIC_IP,
                            ann.get(unicni_store::kube::ANN_PUBLIC_IP)
                        ));
                    }
                }
                if cloud
                    && ![
                        "node.kubernetes.io/instance-type",
                        "topology.kubernetes.io/zone",
                    ]
                    .iter()
                    .all(|l| labels.get(*l).is_some_and(|v| !v.is_empty()))
                {
                    wrong.push(format!("node {name}: no instance-type or zone label"));
                }
            }
            for (ns, name, ips) in want_pods {
                let Some(p) = Api::<Pod>::namespaced(client.clone(), ns)
                    .get_opt(&name)
                    .await?
                else {
                    wrong.push(format!("pod {ns}/{name} is not in the API"));
                    continue;
                };
                let have: Vec<String> = p
                    .status
                    .and_then(|s| s.pod_ips)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|i| i.ip)
                    .collect();
                if have != ips {
                    wrong.push(format!(
                        "pod {ns}/{name}: status.podIPs {have:?}, CNI gave {ips:?}"
                    ));
                }
            }
            Ok(wrong)
        });
        let expected = format!(
            "{n_nodes} Nodes with their address{}, {n_pods} Pods with the addresses CNI gave them",
            if flannel {
                ", podCIDR = the agent's subnet, the agent's annotations"
            } else if cloud {
                ", instance type and zone"
            } else {
                ""
            }
        );
        let (observed, passed) = match r {
            Ok(w) if w.is_empty() => ("as expected".to_string(), true),
            Ok(w) => (w.join("; "), false),
            Err(e) => (format!("{e:#}"), false),
        };
        CheckResult {
            name: "API view (Nodes, Pods)".into(),
            from: "the lab".into(),
            to: format!("the API server {}", self.kube_server()),
            expected,
            observed,
            passed,
        }
    }
}

/// Creates `object`; one that exists already is kept.
async fn create_or_keep<K>(api: &Api<K>, object: &K, what: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(anyhow!(e).context(format!("create {what}"))),
    }
}

/// The controller manager's range allocator: the first /`len` of `cluster` no node has.
fn next_free(cluster: &str, len: u8, used: &BTreeSet<String>) -> Result<String> {
    let net: ipnet::IpNet = cluster.parse()?;
    net.subnets(len)?
        .map(|s| s.to_string())
        .find(|s| !used.contains(s))
        .ok_or_else(|| anyhow!("the cluster CIDR {cluster} has no free /{len} left for a node"))
}

/// Whether two objects have the same content and labels (metadata and status aside).
fn same_content<K: kube::Resource + serde::Serialize>(a: &K, b: &K) -> bool {
    let content = |o: &K| {
        let mut v = serde_json::to_value(o).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    a.meta().labels == b.meta().labels && content(a) == content(b)
}

/// Creates `o`, or replaces the object of its name (at its current resourceVersion).
async fn upsert<K>(client: &kube::Client, mut o: K) -> Result<()>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let ns = o
        .meta()
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = o.meta().name.clone().unwrap_or_default();
    let what = format!("{} {ns}/{name}", K::kind(&()));
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    match api
        .get_opt(&name)
        .await
        .with_context(|| format!("get {what}"))?
    {
        // Unchanged: no write, so watchers see only what really changed (the lab waits
        // for the agents to apply a change, and a no-op event would look like one).
        Some(old) if same_content(&old, &o) => {}
        Some(old) => {
            o.meta_mut().resource_version = old.meta().resource_version.clone();
            api.replace(&name, &PostParams::default(), &o)
                .await
                .with_context(|| format!("replace {what}"))?;
        }
        None => {
            api.create(&PostParams::default(), &o)
                .await
                .with_context(|| format!("create {what}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_takes_the_first_free_subnet() {
        let used: BTreeSet<String> = ["10.250.0.0/24", "10.250.2.0/24"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(
            next_free("10.250.0.0/16", 24, &used).unwrap(),
            "10.250.1.0/24"
        );
        let full: BTreeSet<String> = ["10.0.0.0/25", "10.0.0.128/25"]
            .into_iter()
            .map(String::from)
            .collect();
        let e = next_free("10.0.0.0/24", 25, &full).unwrap_err();
        assert!(e.to_string().contains("no free /25"), "{e}");
    }
}

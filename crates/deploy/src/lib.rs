//! The Kubernetes objects that run unicni on every node of a cluster, rendered from one
//! validated config and what its backend says it needs ([`DeployNeeds`], from the install
//! contract): `unicni manifests --config FILE` prints them.
//!
//! One source for every backend and mode: the RBAC rules, host paths, privileges and
//! credentials follow from the config, so a manifest cannot disagree with the config it
//! ships (the config itself is in the ConfigMap).

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use unicni_config::{Config, StoreKind};
use unicni_core::{ApiAccess, DeployNeeds, HostPathNeed};

/// Where the Kubernetes store keeps its ConfigMaps (the lock, leases):
/// `unicni_store::open::KUBE_NAMESPACE` (a test in the binary's suite checks they agree).
pub const STORE_NAMESPACE: &str = "kube-system";
/// The Secret `cloud.credentials_file` is read from when the node roles call the cloud.
pub const CREDENTIALS_SECRET: &str = "unicni-cloud-credentials";
/// Objects' name (ServiceAccount, ClusterRole, DaemonSet) and the pods' label value.
pub const NAME: &str = "unicni";
const CONFIG_MAP: &str = "unicni-config";
const CONFIG_DIR: &str = "/etc/unicni";
/// The binary's path in the image (deploy/Containerfile).
pub const BINARY: &str = "/usr/local/bin/unicni";

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("store.kind = \"file\" keeps the cluster lock and leases on each node, so every node would be a cluster of its own: set store.kind = \"kubernetes\" (or \"etcd\") for a DaemonSet")]
    FileStore,
    #[error("store.kubeconfig = {0:?}: the DaemonSet's pods use their service account (in-cluster configuration); unset store.kubeconfig")]
    Kubeconfig(String),
    #[error("{field} = {value:?} reads {what} from a directory on the node; in a cluster the agent reads the Kubernetes API: unset {field}")]
    LocalSource {
        field: &'static str,
        value: String,
        what: &'static str,
    },
    #[error("cloud.access_key_id / cloud.access_key_secret are set: the config becomes a ConfigMap, readable by anyone who can read kube-system's ConfigMaps. Put the key pair in the Secret {CREDENTIALS_SECRET} and set cloud.credentials_file to where it is mounted (docs/deploy.md), or leave both unset to use the instance's RAM role")]
    InlineSecret,
    #[error("cloud.credentials_file = {0:?} must be an absolute file path in a directory of its own, not / or {CONFIG_DIR} (the Secret {CREDENTIALS_SECRET} is mounted on that directory)")]
    CredentialsPath(String),
    #[error("bpf.pin_dir = {0:?} is not under /sys/fs/bpf, the bpffs the DaemonSet mounts: use /sys/fs/bpf/<name>")]
    PinDir(String),
    #[error("agent.listen = {0:?} is not an address:port the probes can reach")]
    Listen(String),
    #[error("render YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// What the config does not say: where the image is and what the cluster looks like.
#[derive(Debug, Clone)]
pub struct Options {
    /// The image reference (`scripts/image.sh` prints it).
    pub image: String,
    /// The namespace of the DaemonSet, its ServiceAccount and ConfigMap.
    pub namespace: String,
    /// The config file's name in the ConfigMap and under /etc/unicni in the containers.
    pub config_file_name: String,
    /// The config file's text, as the user wrote it (comments included).
    pub config_text: String,
    /// The runtime's CNI directories on the node (containerd's and CRI-O's defaults).
    pub cni_conf_dir: String,
    pub cni_bin_dir: String,
}

impl Options {
    pub fn new(image: &str, config_file_name: &str, config_text: &str) -> Options {
        Options {
            image: image.into(),
            namespace: "unicni-system".into(),
            config_file_name: config_file_name.into(),
            config_text: config_text.into(),
            cni_conf_dir: "/etc/cni/net.d".into(),
            cni_bin_dir: "/opt/cni/bin".into(),
        }
    }
}

/// The objects, in the order `kubectl apply` needs them (namespace and RBAC first).
pub fn render(c: &Config, needs: &DeployNeeds, o: &Options) -> Result<Vec<Value>, DeployError> {
    check(c)?;
    let mut out = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": o.namespace}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": NAME, "namespace": o.namespace}}),
    ];
    let rules = cluster_rules(c, needs);
    if !rules.is_empty() {
        out.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": NAME}, "rules": rules,
        }));
        out.push(binding(
            "ClusterRoleBinding",
            "ClusterRole",
            None,
            &o.namespace,
        ));
    }
    if c.store.kind == StoreKind::Kubernetes {
        // KubeStore: get/create/delete one record, list by label. Records are replaced by
        // delete + create (the lock is immutable), so no update.
        out.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": format!("{NAME}-store"), "namespace": STORE_NAMESPACE},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                       "verbs": ["get", "list", "create", "delete"]}],
        }));
        out.push(binding(
            "RoleBinding",
            "Role",
            Some(STORE_NAMESPACE),
            &o.namespace,
        ));
    }
    out.push(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": o.namespace},
        "data": {o.config_file_name.as_str(): o.config_text},
    }));
    out.push(daemonset(c, needs, o)?);
    Ok(out)
}

/// `render` as a YAML stream (one document per object), under a header that says what
/// it is for and why each API rule and extra host path is there.
pub fn to_yaml(objects: &[Value], c: &Config, needs: &DeployNeeds) -> Result<String, DeployError> {
    let mut s = format!(
        "# unicni {} / {}: generated by `unicni manifests`; edit the config and regenerate.\n",
        c.backend.kind.as_str(),
        mode(c)
    );
    let mut why: Vec<String> = access(c, needs)
        .iter()
        .map(|a| format!("#   {} {}: {}\n", a.resource, a.verbs.join(", "), a.why))
        .collect();
    if c.store.kind == StoreKind::Kubernetes {
        why.push(format!(
            "#   configmaps in {STORE_NAMESPACE} get, list, create, delete: the cluster lock and the store's records\n"
        ));
    }
    if !why.is_empty() {
        s.push_str("# API access:\n");
        why.iter().for_each(|w| s.push_str(w));
    }
    if !needs.host_paths.is_empty() {
        s.push_str("# Host paths beyond the CNI, state and run directories and bpffs:\n");
        for h in &needs.host_paths {
            s.push_str(&format!("#   {}: {}\n", h.path, h.why));
        }
    }
    for o in objects {
        s.push_str("---\n");
        s.push_str(&serde_yaml::to_string(o)?);
    }
    Ok(s)
}

/// The backend's mode as the lock records it (`vxlan`, `shared-eni`).
fn mode(c: &Config) -> &'static str {
    match c.backend.kind {
        unicni_config::BackendKind::Flannel => c.flannel.mode.as_str(),
        unicni_config::BackendKind::Terway => c.terway.mode.as_str(),
    }
}

fn check(c: &Config) -> Result<(), DeployError> {
    if c.store.kind == StoreKind::File {
        return Err(DeployError::FileStore);
    }
    if let Some(k) = &c.store.kubeconfig {
        return Err(DeployError::Kubeconfig(k.clone()));
    }
    if let Some(d) = &c.terway.pod_info_dir {
        return Err(DeployError::LocalSource {
            field: "terway.pod_info_dir",
            value: d.clone(),
            what: "pod annotations",
        });
    }
    if let Some(d) = &c.policy.manifests_dir {
        return Err(DeployError::LocalSource {
            field: "policy.manifests_dir",
            value: d.clone(),
            what: "NetworkPolicies",
        });
    }
    if c.cloud.access_key_id.is_some() || c.cloud.access_key_secret.is_some() {
        return Err(DeployError::InlineSecret);
    }
    Ok(())
}

/// What the backend's node roles call, plus the policy engine's and the Service load
/// balancer's reflectors.
fn access(c: &Config, needs: &DeployNeeds) -> Vec<ApiAccess> {
    let mut all: Vec<ApiAccess> = needs.api.clone();
    if c.policy.enabled {
        // The policy engine's reflectors (policy-agent source): list + watch.
        for (group, resource) in [
            ("networking.k8s.io", "networkpolicies"),
            ("", "pods"),
            ("", "namespaces"),
        ] {
            all.push(ApiAccess {
                group,
                resource,
                verbs: vec!["list", "watch"],
                why: "NetworkPolicy enforcement",
            });
        }
    }
    if c.services.enabled {
        // The Service load balancer's caches (agent services source): get + list + watch.
        for (group, resource) in [("", "services"), ("discovery.k8s.io", "endpointslices")] {
            all.push(ApiAccess {
                group,
                resource,
                verbs: vec!["get", "list", "watch"],
                why: "eBPF Service load balancing",
            });
        }
    }
    all
}

/// The backend's rules plus the policy engine's, one rule per resource with the union of
/// verbs, sorted so that the output is stable.
fn cluster_rules(c: &Config, needs: &DeployNeeds) -> Vec<Value> {
    let all = access(c, needs);
    let mut merged: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for a in &all {
        let verbs = merged.entry((a.group, a.resource)).or_default();
        for v in &a.verbs {
            if !verbs.contains(v) {
                verbs.push(v);
            }
        }
    }
    let order = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    merged
        .into_iter()
        .map(|((group, resource), mut verbs)| {
            verbs.sort_by_key(|v| order.iter().position(|o| o == v).unwrap_or(order.len()));
            json!({"apiGroups": [group], "resources": [resource], "verbs": verbs})
        })
        .collect()
}

fn binding(kind: &str, role_kind: &str, namespace: Option<&str>, sa_namespace: &str) -> Value {
    let name = if namespace.is_some() {
        format!("{NAME}-store")
    } else {
        NAME.to_string()
    };
    let mut metadata = json!({ "name": name });
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": sa_namespace}],
    })
}

/// Where the agent's container sees the host's cgroup v2 hierarchy (services.enabled).
const CGROUP_ROOT_IN_AGENT: &str = "/host/sys/fs/cgroup";

/// One hostPath volume and where it is mounted (the same path inside, unless `at`).
struct Mount {
    name: String,
    path: String,
    at: Option<&'static str>,
    type_: &'static str,
    propagation: Option<&'static str>,
    read_only: bool,
}

impl Mount {
    fn host(name: &str, path: &str, type_: &'static str) -> Mount {
        Mount {
            name: name.into(),
            path: path.into(),
            at: None,
            type_,
            propagation: None,
            read_only: false,
        }
    }
    fn volume(&self) -> Value {
        json!({"name": self.name, "hostPath": {"path": self.path, "type": self.type_}})
    }
    fn mount(&self) -> Value {
        let mut m = json!({"name": self.name, "mountPath": self.at.unwrap_or(&self.path)});
        if let Some(p) = self.propagation {
            m["mountPropagation"] = json!(p);
        }
        if self.read_only {
            m["readOnly"] = json!(true);
        }
        m
    }
}

/// The agent's health port and the host the probes ask (the listen address unless it is
/// a wildcard, which the kubelet reaches on the pod's = node's IP).
fn probe_target(listen: &str) -> Result<(u16, Option<String>), DeployError> {
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| DeployError::Listen(listen.into()))?;
    if addr.port() == 0 {
        return Err(DeployError::Listen(listen.into()));
    }
    let host = (!addr.ip().is_unspecified()).then(|| addr.ip().to_string());
    Ok((addr.port(), host))
}

fn probe(path: &str, port: u16, host: &Option<String>, period: u32, failures: u32) -> Value {
    let mut get = json!({"path": path, "port": port, "scheme": "HTTP"});
    if let Some(h) = host {
        get["host"] = json!(h);
    }
    json!({"httpGet": get, "periodSeconds": period, "timeoutSeconds": 2,
           "failureThreshold": failures})
}

fn daemonset(c: &Config, needs: &DeployNeeds, o: &Options) -> Result<Value, DeployError> {
    let (port, host) = probe_target(&c.agent.listen)?;
    let config_path = format!("{CONFIG_DIR}/{}", o.config_file_name);
    let config_mount = json!({"name": "config", "mountPath": CONFIG_DIR, "readOnly": true});
    let mut volumes = vec![json!({"name": "config", "configMap": {"name": CONFIG_MAP}})];

    // The init container writes the conflist and copies the binary: the CNI directories.
    let cni = [
        Mount::host("cni-conf", &o.cni_conf_dir, "DirectoryOrCreate"),
        Mount::host("cni-bin", &o.cni_bin_dir, "DirectoryOrCreate"),
    ];
    // The agent: node state (IPAM, pools), runtime state (lease file, socket, readiness),
    // bpffs when it pins programs, and what the backend asks for.
    let mut agent = vec![
        Mount::host("state", &c.node.state_dir, "DirectoryOrCreate"),
        Mount::host("run", &c.node.run_dir, "DirectoryOrCreate"),
    ];
    if needs.ebpf || c.policy.enabled || c.services.enabled {
        if !Path::new(&c.bpf.pin_dir).starts_with("/sys/fs/bpf") {
            return Err(DeployError::PinDir(c.bpf.pin_dir.clone()));
        }
        // Bidirectional: if the node has no bpffs mounted, the agent mounts one, and the
        // pins must outlive the container (an agent restart keeps pods' programs).
        agent.push(Mount {
            propagation: Some("Bidirectional"),
            ..Mount::host("bpffs", "/sys/fs/bpf", "Directory")
        });
    }
    if c.services.enabled {
        // The Service programs attach to the root of the host's cgroup v2 hierarchy; in a
        // private cgroup namespace (containerd's default on cgroup v2) the container's own
        // /sys/fs/cgroup is only its subtree. The host's mount, bind-mounted elsewhere,
        // still opens the real root (the agent is pointed at it through the env below).
        agent.push(Mount {
            at: Some(CGROUP_ROOT_IN_AGENT),
            read_only: true,
            ..Mount::host("cgroup2", "/sys/fs/cgroup", "Directory")
        });
    }
    for HostPathNeed {
        name,
        path,
        follow_host_mounts,
        ..
    } in &needs.host_paths
    {
        agent.push(Mount {
            propagation: follow_host_mounts.then_some("HostToContainer"),
            ..Mount::host(name, path, "DirectoryOrCreate")
        });
    }
    volumes.extend(cni.iter().chain(agent.iter()).map(Mount::volume));

    let mut init_mounts = vec![config_mount.clone()];
    init_mounts.extend(cni.iter().map(Mount::mount));
    let mut agent_mounts = vec![config_mount];
    agent_mounts.extend(agent.iter().map(Mount::mount));

    // Cloud credentials: a Secret mounted where cloud.credentials_file points, or nothing
    // (the instance's RAM role, from the metadata service). Whatever cloud.kind: the
    // client reads the file for the emulator too.
    if needs.cloud {
        if let Some(file) = &c.cloud.credentials_file {
            let p = Path::new(file);
            let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
                return Err(DeployError::CredentialsPath(file.clone()));
            };
            if !p.is_absolute() || dir == Path::new("/") || dir == Path::new(CONFIG_DIR) {
                return Err(DeployError::CredentialsPath(file.clone()));
            }
            let name = name.to_string_lossy();
            volumes.push(json!({"name": "cloud-credentials", "secret": {
                "secretName": CREDENTIALS_SECRET, "defaultMode": 0o400,
                "items": [{"key": name, "path": name}]}}));
            let m = json!({"name": "cloud-credentials", "mountPath": dir.to_string_lossy(),
                           "readOnly": true});
            init_mounts.push(m.clone());
            agent_mounts.push(m);
        }
    }

    // The node's name as the Kubernetes API knows it (figment: UNICNI_NODE__NAME = node.name).
    let env = json!([{"name": "UNICNI_NODE__NAME",
                      "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]);
    let mut agent_env = env.clone();
    if c.services.enabled && c.services.cgroup_root.is_none() {
        if let Some(v) = agent_env.as_array_mut() {
            v.push(json!({"name": "UNICNI_SERVICES__CGROUP_ROOT", "value": CGROUP_ROOT_IN_AGENT}));
        }
    }
    let labels = json!({"app.kubernetes.io/name": NAME});
    Ok(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": NAME, "namespace": o.namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            // One node at a time: a node's pods keep their network while its agent is
            // replaced (the datapath stays in the kernel), and a bad build stops at one.
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": NAME,
                    "hostNetwork": true,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "priorityClassName": "system-node-critical",
                    // Every node needs its pod network, including tainted ones.
                    "tolerations": [{"operator": "Exists"}],
                    "terminationGracePeriodSeconds": 30,
                    "initContainers": [{
                        "name": "install",
                        "image": o.image,
                        "command": [BINARY, "install", "--with-agent", "--config", config_path,
                                    "--cni-conf-dir", o.cni_conf_dir,
                                    "--cni-bin-dir", o.cni_bin_dir],
                        "env": env,
                        // Writes two host directories and talks to the API server: root's
                        // file access, no added capabilities.
                        "securityContext": {"allowPrivilegeEscalation": false},
                        "volumeMounts": init_mounts,
                    }],
                    "containers": [{
                        "name": "agent",
                        "image": o.image,
                        "command": [BINARY, "agent", "--config", config_path],
                        "env": agent_env,
                        // Privileged: the agent writes net sysctls (ip_forward) through
                        // /proc/sys, which the runtime mounts read-only otherwise; it also
                        // needs NET_ADMIN/NET_RAW (links, routes, nftables), BPF/SYS_ADMIN
                        // (programs, pins, setns) and a Bidirectional bpffs mount.
                        "securityContext": {"privileged": true},
                        "ports": [{"name": "health", "containerPort": port, "protocol": "TCP"}],
                        "readinessProbe": probe("/readyz", port, &host, 5, 3),
                        "livenessProbe": probe("/healthz", port, &host, 10, 6),
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        "volumeMounts": agent_mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_target_keeps_a_specific_host_and_drops_a_wildcard() {
        assert_eq!(
            probe_target("127.0.0.1:9099").unwrap(),
            (9099, Some("127.0.0.1".into()))
        );
        assert_eq!(probe_target("0.0.0.0:9100").unwrap(), (9100, None));
        assert!(probe_target("localhost").is_err());
        assert!(probe_target("0.0.0.0:0").is_err());
    }

    #[test]
    fn rules_merge_verbs_per_resource() {
        let mut c = Config::default();
        c.policy.enabled = true;
        let needs = DeployNeeds {
            api: vec![ApiAccess {
                group: "",
                resource: "pods",
                verbs: vec!["get"],
                why: "test",
            }],
            ..Default::default()
        };
        let rules = cluster_rules(&c, &needs);
        let pods: Vec<&Value> = rules
            .iter()
            .filter(|r| r["resources"][0] == "pods")
            .collect();
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0]["verbs"], json!(["get", "list", "watch"]));
    }

    #[test]
    fn services_get_list_watch_services_and_endpointslices_only_when_enabled() {
        let mut c = Config::default();
        let needs = DeployNeeds::default();
        let find = |rules: &[Value], res: &str| {
            rules
                .iter()
                .find(|r| r["resources"][0] == res)
                .map(|r| (r["apiGroups"].clone(), r["verbs"].clone()))
        };
        assert_eq!(find(&cluster_rules(&c, &needs), "services"), None);
        c.services.enabled = true;
        let rules = cluster_rules(&c, &needs);
        assert_eq!(
            find(&rules, "services"),
            Some((json!([""]), json!(["get", "list", "watch"])))
        );
        assert_eq!(
            find(&rules, "endpointslices"),
            Some((json!(["discovery.k8s.io"]), json!(["get", "list", "watch"])))
        );
    }

    #[test]
    fn services_mount_the_hosts_cgroup2_and_point_the_agent_at_it() {
        let mut c = Config::default();
        c.services.enabled = true;
        let ds = daemonset(
            &c,
            &DeployNeeds::default(),
            &Options::new("img", "c.toml", ""),
        )
        .unwrap();
        let spec = &ds["spec"]["template"]["spec"];
        let agent = &spec["containers"][0];
        assert!(spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["hostPath"]["path"] == "/sys/fs/cgroup"));
        assert!(agent["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| { m["mountPath"] == CGROUP_ROOT_IN_AGENT && m["readOnly"] == true }));
        assert!(agent["env"].as_array().unwrap().iter().any(|e| {
            e["name"] == "UNICNI_SERVICES__CGROUP_ROOT" && e["value"] == CGROUP_ROOT_IN_AGENT
        }));
        // Not for the init container, and nothing without services.
        assert_eq!(
            spec["initContainers"][0]["env"].as_array().unwrap().len(),
            1
        );
        c.services.enabled = false;
        let ds = daemonset(
            &c,
            &DeployNeeds::default(),
            &Options::new("img", "c.toml", ""),
        )
        .unwrap();
        assert!(!ds.to_string().contains("cgroup"));
    }
}

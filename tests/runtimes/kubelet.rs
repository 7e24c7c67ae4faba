//! A kubelet-like runner: runs a DaemonSet's pod template on one node through containerd's
//! CRI the way the kubelet does. The pod gets a host-network sandbox. Init containers run
//! to completion in order, then the containers start. Each container gets its command and
//! args, its env (literal values and the `fieldRef`s the kubelet resolves, plus the
//! `KUBERNETES_SERVICE_*` variables), its volumes (hostPath with type and propagation,
//! ConfigMap data and Secret stringData written to files), its privilege or capabilities, and the
//! service-account token and CA at the in-cluster path. Readiness probes are polled from
//! the node's network namespace, and the logs stay in the pod's log directory.
//!
//! What it does not do: restarts, liveness kills, resource limits, image pulls (images must
//! be imported), and volume kinds other than hostPath, configMap and secret.

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use serde_yaml::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const SA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The node the pod runs on, as the kubelet knows it.
pub struct Node {
    pub name: String,
    /// The node's network namespace (host network = this namespace): probes run there.
    pub netns: String,
    /// The API server as in-cluster clients see it (`KUBERNETES_SERVICE_HOST`/`_PORT`).
    pub api_host: String,
    pub api_port: u16,
    /// `token`, `ca.crt` and `namespace`, projected at the in-cluster path.
    pub service_account: PathBuf,
    /// Where volumes' files and logs go.
    pub dir: PathBuf,
    /// cgroupfs parent of the pod (remove it with `Defer::cgroup`).
    pub cgroup_parent: String,
}

/// A pod the runner started.
pub struct PodRun {
    pub sandbox: String,
    pub log_dir: PathBuf,
    /// Container name to container id, init containers included.
    pub containers: Vec<(String, String)>,
}

impl PodRun {
    /// The CRI log of one container (empty if it never wrote one).
    pub fn log(&self, container: &str) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("{container}.log"))).unwrap_or_default()
    }
}

pub struct Kubelet {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    pub node: Node,
    /// The objects volumes refer to (ConfigMaps, Secrets), as `kubectl apply` would have
    /// stored them.
    objects: Vec<Value>,
}

fn s(v: &Value) -> Option<&str> {
    v.as_str()
}

impl Kubelet {
    pub fn connect(socket: &Path, node: Node, objects: Vec<Value>) -> Kubelet {
        let (rt, channel) = super::cri::channel(socket);
        Kubelet {
            rt,
            runtime: RuntimeServiceClient::new(channel),
            node,
            objects,
        }
    }

    fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.iter().find(|o| {
            o["kind"] == kind
                && s(&o["metadata"]["name"]) == Some(name)
                && s(&o["metadata"]["namespace"]).unwrap_or("default") == namespace
        })
    }

    /// Runs the pod template of DaemonSet `ds` on the node: sandbox, init containers to
    /// completion in order, then the containers. An init container that fails stops the
    /// pod there (as the kubelet would keep retrying it): the error carries its log.
    pub fn run_daemonset(&mut self, ds: &Value) -> Result<PodRun, String> {
        let namespace = s(&ds["metadata"]["namespace"])
            .unwrap_or("default")
            .to_string();
        let pod_name = format!(
            "{}-{}",
            s(&ds["metadata"]["name"]).ok_or("DaemonSet without a name")?,
            self.node.name
        );
        let spec = &ds["spec"]["template"]["spec"];
        let host_network = spec["hostNetwork"].as_bool().unwrap_or(false);
        let all: Vec<&Value> = ["initContainers", "containers"]
            .iter()
            .flat_map(|k| spec[*k].as_sequence().into_iter().flatten())
            .collect();
        let privileged = all
            .iter()
            .any(|c| c["securityContext"]["privileged"].as_bool() == Some(true));
        let ns_mode = |host: bool| {
            if host {
                NamespaceMode::Node as i32
            } else {
                NamespaceMode::Pod as i32
            }
        };
        let log_dir = self.node.dir.join("pods").join(&pod_name);
        std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let sandbox_config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: pod_name.clone(),
                uid: format!("uid-{pod_name}"),
                namespace: namespace.clone(),
                attempt: 0,
            }),
            hostname: if host_network {
                String::new()
            } else {
                pod_name.clone()
            },
            log_directory: log_dir.display().to_string(),
            labels: labels(&ds["spec"]["template"]["metadata"]["labels"]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.node.cgroup_parent.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: ns_mode(host_network),
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sandbox = self
            .rt
            .block_on(self.runtime.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: String::new(),
            }))
            .map_err(|e| format!("RunPodSandbox {pod_name}: {e}"))?
            .into_inner()
            .pod_sandbox_id;
        let mut run = PodRun {
            sandbox,
            log_dir,
            containers: Vec::new(),
        };
        let volumes = self.volumes(spec, &namespace, &pod_name)?;
        let pod = PodFacts {
            name: &pod_name,
            namespace: &namespace,
            host_network,
        };
        for c in spec["initContainers"].as_sequence().into_iter().flatten() {
            let name = s(&c["name"]).unwrap_or("init").to_string();
            let id = self.start(&run, &sandbox_config, c, &volumes, &pod)?;
            run.containers.push((name.clone(), id.clone()));
            let code = self.wait_exit(&id, Duration::from_secs(120))?;
            if code != 0 {
                return Err(format!(
                    "init container {name} exited {code}; its log:\n{}",
                    run.log(&name)
                ));
            }
        }
        for c in spec["containers"].as_sequence().into_iter().flatten() {
            let name = s(&c["name"]).unwrap_or("main").to_string();
            let id = self.start(&run, &sandbox_config, c, &volumes, &pod)?;
            run.containers.push((name, id));
        }
        Ok(run)
    }

    /// Volume name to (host path, read-only): hostPath as is (created for the
    /// `...OrCreate` types, checked otherwise), ConfigMap and Secret data as files.
    fn volumes(
        &self,
        spec: &Value,
        namespace: &str,
        pod: &str,
    ) -> Result<HashMap<String, (PathBuf, bool)>, String> {
        let mut out = HashMap::new();
        for v in spec["volumes"].as_sequence().into_iter().flatten() {
            let name = s(&v["name"]).ok_or("volume without a name")?.to_string();
            let entry = if let Some(path) = s(&v["hostPath"]["path"]) {
                let p = PathBuf::from(path);
                match s(&v["hostPath"]["type"]).unwrap_or("") {
                    "DirectoryOrCreate" => {
                        std::fs::create_dir_all(&p).map_err(|e| format!("hostPath {path}: {e}"))?
                    }
                    "Directory" if !p.is_dir() => {
                        return Err(format!("hostPath {path}: not a directory"))
                    }
                    _ => {}
                }
                // Resolved as the runtime's mount lookup needs it: containerd checks the
                // propagation of the mount holding the path without following symlinks,
                // so /var/run/netns (-> /run/netns, a shared mount) would be judged by /.
                let p = std::fs::canonicalize(&p).unwrap_or(p);
                (p, false)
            } else if let Some(cm) = s(&v["configMap"]["name"]) {
                let obj = self.object("ConfigMap", namespace, cm).ok_or_else(|| {
                    format!("volume {name}: ConfigMap {namespace}/{cm} not found")
                })?;
                let files = string_map(&obj["data"]);
                (
                    self.write_files(pod, &name, &files, &v["configMap"]["items"])?,
                    true,
                )
            } else if let Some(sec) = s(&v["secret"]["secretName"]) {
                let obj = self
                    .object("Secret", namespace, sec)
                    .ok_or_else(|| format!("volume {name}: Secret {namespace}/{sec} not found"))?;
                // The runner's Secrets are written by the test in stringData form.
                if !obj["data"].is_null() {
                    return Err(format!(
                        "volume {name}: Secret {sec}: give the runner stringData"
                    ));
                }
                let files = string_map(&obj["stringData"]);
                (
                    self.write_files(pod, &name, &files, &v["secret"]["items"])?,
                    true,
                )
            } else {
                return Err(format!(
                    "volume {name}: kind not supported by the runner: {v:?}"
                ));
            };
            out.insert(name, entry);
        }
        Ok(out)
    }

    fn write_files(
        &self,
        pod: &str,
        volume: &str,
        files: &HashMap<String, String>,
        items: &Value,
    ) -> Result<PathBuf, String> {
        let dir = self.node.dir.join("volumes").join(pod).join(volume);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut wanted: Vec<(String, String)> = match items.as_sequence() {
            Some(items) => items
                .iter()
                .map(|i| {
                    let key = s(&i["key"]).unwrap_or_default().to_string();
                    (key.clone(), s(&i["path"]).unwrap_or(&key).to_string())
                })
                .collect(),
            None => files.keys().map(|k| (k.clone(), k.clone())).collect(),
        };
        wanted.sort();
        for (key, path) in wanted {
            let text = files
                .get(&key)
                .ok_or_else(|| format!("volume {volume}: no key {key}"))?;
            std::fs::write(dir.join(path), text).map_err(|e| e.to_string())?;
        }
        Ok(dir)
    }

    fn start(
        &mut self,
        run: &PodRun,
        sandbox_config: &PodSandboxConfig,
        c: &Value,
        volumes: &HashMap<String, (PathBuf, bool)>,
        pod: &PodFacts,
    ) -> Result<String, String> {
        let name = s(&c["name"]).ok_or("container without a name")?.to_string();
        let mut envs = vec![
            kv("KUBERNETES_SERVICE_HOST", &self.node.api_host),
            kv("KUBERNETES_SERVICE_PORT", &self.node.api_port.to_string()),
        ];
        for e in c["env"].as_sequence().into_iter().flatten() {
            let key = s(&e["name"]).ok_or("env without a name")?;
            let value = if let Some(v) = s(&e["value"]) {
                v.to_string()
            } else if let Some(f) = s(&e["valueFrom"]["fieldRef"]["fieldPath"]) {
                match f {
                    "spec.nodeName" => self.node.name.clone(),
                    "metadata.name" => pod.name.to_string(),
                    "metadata.namespace" => pod.namespace.to_string(),
                    other => return Err(format!("env {key}: fieldRef {other} not supported")),
                }
            } else {
                return Err(format!("env {key}: only value and fieldRef are supported"));
            };
            envs.push(kv(key, &value));
        }
        let mut mounts = Vec::new();
        for m in c["volumeMounts"].as_sequence().into_iter().flatten() {
            let vol = s(&m["name"]).ok_or("volumeMount without a name")?;
            let (host, ro) = volumes
                .get(vol)
                .ok_or_else(|| format!("container {name}: volumeMount {vol} has no volume"))?;
            let propagation = match s(&m["mountPropagation"]) {
                Some("HostToContainer") => MountPropagation::PropagationHostToContainer,
                Some("Bidirectional") => MountPropagation::PropagationBidirectional,
                _ => MountPropagation::PropagationPrivate,
            };
            mounts.push(Mount {
                container_path: s(&m["mountPath"]).ok_or("mountPath missing")?.into(),
                host_path: host.display().to_string(),
                readonly: *ro || m["readOnly"].as_bool() == Some(true),
                propagation: propagation as i32,
                ..Default::default()
            });
        }
        mounts.push(Mount {
            container_path: SA_PATH.into(),
            host_path: self.node.service_account.display().to_string(),
            readonly: true,
            ..Default::default()
        });
        let sc = &c["securityContext"];
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.clone(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: s(&c["image"]).ok_or("container without an image")?.into(),
                ..Default::default()
            }),
            command: strings(&c["command"]),
            args: strings(&c["args"]),
            envs,
            mounts,
            log_path: format!("{name}.log"),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    privileged: sc["privileged"].as_bool() == Some(true),
                    capabilities: Some(Capability {
                        add_capabilities: strings(&sc["capabilities"]["add"]),
                        drop_capabilities: strings(&sc["capabilities"]["drop"]),
                        ..Default::default()
                    }),
                    no_new_privs: sc["allowPrivilegeEscalation"].as_bool() == Some(false),
                    namespace_options: Some(NamespaceOption {
                        network: if pod.host_network {
                            NamespaceMode::Node as i32
                        } else {
                            NamespaceMode::Pod as i32
                        },
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self
            .rt
            .block_on(self.runtime.create_container(CreateContainerRequest {
                pod_sandbox_id: run.sandbox.clone(),
                config: Some(config),
                sandbox_config: Some(sandbox_config.clone()),
            }))
            .map_err(|e| format!("CreateContainer {name}: {e}"))?
            .into_inner()
            .container_id;
        self.rt
            .block_on(self.runtime.start_container(StartContainerRequest {
                container_id: id.clone(),
            }))
            .map_err(|e| format!("StartContainer {name}: {e}"))?;
        Ok(id)
    }

    /// The container's state and exit code.
    pub fn status(&mut self, id: &str) -> Result<(i32, i32), String> {
        let st = self
            .rt
            .block_on(self.runtime.container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            }))
            .map_err(|e| format!("ContainerStatus {id}: {e}"))?
            .into_inner()
            .status
            .ok_or("ContainerStatus without a status")?;
        Ok((st.state, st.exit_code))
    }

    fn wait_exit(&mut self, id: &str, timeout: Duration) -> Result<i32, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let (state, code) = self.status(id)?;
            if state == ContainerState::ContainerExited as i32 {
                return Ok(code);
            }
            if Instant::now() > deadline {
                return Err(format!("container {id} still running after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls the readiness probe of `container` of the DaemonSet `ds` until it passes.
    pub fn wait_ready(
        &mut self,
        ds: &Value,
        run: &PodRun,
        container: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        self.wait_probe(ds, run, container, "readinessProbe", timeout)
    }

    /// Polls `probe` (`readinessProbe`, `livenessProbe`: httpGet) of `container` from the
    /// node's network namespace until it answers 200, as the kubelet's prober does; fails
    /// early if the container exits.
    pub fn wait_probe(
        &mut self,
        ds: &Value,
        run: &PodRun,
        container: &str,
        probe: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let spec = &ds["spec"]["template"]["spec"];
        let c = spec["containers"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|c| s(&c["name"]) == Some(container))
            .ok_or_else(|| format!("no container {container}"))?;
        let get = &c[probe]["httpGet"];
        let url = format!(
            "http://{}:{}{}",
            s(&get["host"]).unwrap_or("127.0.0.1"),
            get["port"]
                .as_u64()
                .ok_or_else(|| format!("{probe} without a numeric port"))?,
            s(&get["path"]).unwrap_or("/")
        );
        let id = run
            .containers
            .iter()
            .find(|(n, _)| n == container)
            .map(|(_, id)| id.clone())
            .ok_or_else(|| format!("container {container} was not started"))?;
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let (state, code) = self.status(&id)?;
            if state == ContainerState::ContainerExited as i32 {
                return Err(format!(
                    "{container} exited {code}; its log:\n{}",
                    run.log(container)
                ));
            }
            let out = Command::new("ip")
                .args(["netns", "exec", &self.node.netns, "curl", "-s", "-m", "2"])
                .args(["-w", "\n%{http_code}", &url])
                .output()
                .map_err(|e| format!("curl: {e}"))?;
            last = String::from_utf8_lossy(&out.stdout).into_owned();
            if last.trim_end().ends_with("200") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(format!(
            "{container}: {probe} failing after {timeout:?} ({url}: {last:?}); its log:\n{}",
            run.log(container)
        ))
    }

    /// Stops and removes the pod (its containers go with the sandbox).
    pub fn remove(&mut self, run: &PodRun) {
        let _ = self
            .rt
            .block_on(self.runtime.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: run.sandbox.clone(),
            }));
        let _ = self
            .rt
            .block_on(self.runtime.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: run.sandbox.clone(),
            }));
    }
}

struct PodFacts<'a> {
    name: &'a str,
    namespace: &'a str,
    host_network: bool,
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v.into(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

fn string_map(v: &Value) -> HashMap<String, String> {
    v.as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
        .collect()
}

fn labels(v: &Value) -> HashMap<String, String> {
    string_map(v)
}

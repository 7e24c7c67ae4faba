//! A CRI v1 client over containerd's unix socket: the calls the kubelet makes to run a
//! pod, driven from a test.

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

pub struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// What a test asks of a pod.
#[derive(Default, Clone)]
pub struct PodSpec {
    pub name: String,
    /// (container port, host port) over TCP.
    pub host_ports: Vec<(i32, i32)>,
    /// The CRI pod annotations kubelet would set (e.g. bandwidth limits).
    pub annotations: HashMap<String, String>,
    /// cgroupfs parent of the pod's containers (e.g. `/unicni-test-x`); remove it with
    /// `Defer::cgroup` so no empty cgroup directory outlives the test.
    pub cgroup_parent: String,
}

pub struct Pod {
    pub id: String,
    pub config: PodSandboxConfig,
}

/// A current-thread runtime and a gRPC channel to the CRI socket at `socket`.
pub fn channel(socket: &Path) -> (tokio::runtime::Runtime, Channel) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let path: PathBuf = socket.to_path_buf();
    let channel = rt
        .block_on(async move {
            Endpoint::try_from("http://[::]:50051")
                .expect("endpoint")
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(120))
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
                .await
        })
        .unwrap_or_else(|e| panic!("connect to CRI at {}: {e}", socket.display()));
    (rt, channel)
}

impl Cri {
    pub fn connect(socket: &Path) -> Self {
        let (rt, channel) = channel(socket);
        Self {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        }
    }

    pub fn version(&mut self) -> Result<VersionResponse, tonic::Status> {
        let req = VersionRequest {
            version: "v1".into(),
        };
        self.rt
            .block_on(self.runtime.version(req))
            .map(|r| r.into_inner())
    }

    /// True once the CRI plugin reports its network ready (it has loaded a CNI config).
    pub fn network_ready(&mut self) -> bool {
        let Ok(resp) = self
            .rt
            .block_on(self.runtime.status(StatusRequest { verbose: false }))
        else {
            return false;
        };
        resp.into_inner()
            .status
            .map(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.r#type == "NetworkReady" && c.status)
            })
            .unwrap_or(false)
    }

    pub fn image_present(&mut self, image: &str) -> bool {
        let req = ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        self.rt
            .block_on(self.images.image_status(req))
            .map(|r| r.into_inner().image.is_some())
            .unwrap_or(false)
    }

    pub fn run_pod(&mut self, spec: &PodSpec, log_dir: &Path) -> Result<Pod, tonic::Status> {
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: spec.name.clone(),
                uid: format!("uid-{}", spec.name),
                namespace: "unicni-test".into(),
                attempt: 0,
            }),
            hostname: spec.name.clone(),
            log_directory: log_dir.display().to_string(),
            port_mappings: spec
                .host_ports
                .iter()
                .map(|(c, h)| PortMapping {
                    protocol: Protocol::Tcp as i32,
                    container_port: *c,
                    host_port: *h,
                    host_ip: String::new(),
                })
                .collect(),
            annotations: spec.annotations.clone(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: spec.cgroup_parent.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let id = self
            .rt
            .block_on(self.runtime.run_pod_sandbox(req))?
            .into_inner()
            .pod_sandbox_id;
        Ok(Pod { id, config })
    }

    pub fn pod_ip(&mut self, pod: &Pod) -> String {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: pod.id.clone(),
            verbose: false,
        };
        let status = self
            .rt
            .block_on(self.runtime.pod_sandbox_status(req))
            .unwrap_or_else(|e| panic!("PodSandboxStatus {}: {e}", pod.id))
            .into_inner();
        status
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default()
    }

    /// Creates and starts a container in the pod running `command`, with NET_RAW so that
    /// busybox ping works.
    pub fn start_container(
        &mut self,
        pod: &Pod,
        name: &str,
        image: &str,
        command: &[&str],
    ) -> Result<String, tonic::Status> {
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    capabilities: Some(Capability {
                        add_capabilities: vec!["NET_RAW".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        };
        let id = self
            .rt
            .block_on(self.runtime.create_container(req))?
            .into_inner()
            .container_id;
        let req = StartContainerRequest {
            container_id: id.clone(),
        };
        self.rt.block_on(self.runtime.start_container(req))?;
        Ok(id)
    }

    /// Runs `cmd` in the container; returns (exit code, stdout + stderr).
    pub fn exec(&mut self, container: &str, cmd: &[&str]) -> (i32, String) {
        let req = ExecSyncRequest {
            container_id: container.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 30,
        };
        let resp = self
            .rt
            .block_on(self.runtime.exec_sync(req))
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?} in {container}: {e}"))
            .into_inner();
        let mut text = String::from_utf8_lossy(&resp.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&resp.stderr));
        (resp.exit_code, text)
    }

    pub fn stop_pod(&mut self, id: &str) -> Result<(), tonic::Status> {
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.rt.block_on(self.runtime.stop_pod_sandbox(req))?;
        Ok(())
    }

    pub fn remove_pod(&mut self, id: &str) -> Result<(), tonic::Status> {
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.rt.block_on(self.runtime.remove_pod_sandbox(req))?;
        Ok(())
    }

    pub fn list_pods(&mut self) -> Vec<String> {
        self.rt
            .block_on(
                self.runtime
                    .list_pod_sandbox(ListPodSandboxRequest { filter: None }),
            )
            .map(|r| r.into_inner().items.into_iter().map(|p| p.id).collect())
            .unwrap_or_default()
    }
}

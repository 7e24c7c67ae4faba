//! Lab nodes: the real `unicni install` and a real `unicni agent` per node, each run
//! inside the node's namespace exactly as a DaemonSet pod with host networking would.

use super::topology::{
    Backend, Datapath, IpStack, Lab, LabState, Mode, StoreChoice, AGENT_LISTEN, CLUSTER_CIDR,
    CLUSTER_CIDR6, ETCD_PORT, NETWORK, NODE_SUBNET_LEN, NODE_VSWITCH, OTHER, OTHER_CLUSTER,
    OTHER_CLUSTER_CIDR, OTHER_CLUSTER_CIDR6, OTHER_NETWORK, OTHER_VSWITCH, SECURITY_GROUP,
    TERWAY_POOL_MAX, TERWAY_POOL_MIN,
};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

impl Lab {
    /// Node `i`'s config file. Node [`OTHER`] is the second cluster's: its own cluster
    /// name, network name and file store; flannel gives it its own cluster CIDR (and vxlan
    /// in place of vpc-route: it has no route-table entries), terway its own vSwitch.
    pub fn node_config_text(&self, i: usize, st: &LabState) -> String {
        let dir = self.node_dir(i);
        let other = i == OTHER;
        let store = match st.store {
            _ if other => format!("kind = \"file\"\npath = \"{}/store\"\n", dir.display()),
            StoreChoice::File => format!("kind = \"file\"\npath = \"{}/store\"\n", self.root.display()),
            StoreChoice::Etcd => format!(
                "kind = \"etcd\"\nendpoints = [\"http://{}:{ETCD_PORT}\"]\nprefix = \"/unicni-lab\"\n",
                self.outside_ip()
            ),
            // No kubeconfig: the in-cluster configuration ([`Lab::node_command`]).
            StoreChoice::Kubernetes => "kind = \"kubernetes\"\n".to_string(),
        };
        // On the Kubernetes store pods and policies come from the API, not from files.
        let kube = st.store == StoreChoice::Kubernetes && !other;
        let (cluster, network) = if other {
            (OTHER_CLUSTER, OTHER_NETWORK)
        } else {
            ("lab", NETWORK)
        };
        let backend = match st.backend {
            Backend::Flannel => {
                let (cidr, mode) = match st.mode {
                    _ if !other => (CLUSTER_CIDR, st.mode),
                    Mode::HostGw => (OTHER_CLUSTER_CIDR, Mode::HostGw),
                    _ => (OTHER_CLUSTER_CIDR, Mode::Vxlan),
                };
                let ipv6 = match (st.ip_stack, other) {
                    (IpStack::Ipv4, _) => String::new(),
                    (IpStack::Dual, false) => format!("ipv6_network = \"{CLUSTER_CIDR6}\"\n"),
                    (IpStack::Dual, true) => {
                        format!("ipv6_network = \"{OTHER_CLUSTER_CIDR6}\"\n")
                    }
                };
                format!(
                    "[flannel]\nnetwork = \"{cidr}\"\nsubnet_len = {NODE_SUBNET_LEN}\n{ipv6}mode = \"{mode}\"\ninterface = \"eth0\"\n",
                    mode = mode.as_str()
                )
            }
            Backend::Terway => format!(
                "[backend]\nkind = \"terway\"\n\n[terway]\nmode = \"{mode}\"\nvswitches = [\"{vsw}\"]\n\
                 security_groups = [\"{SECURITY_GROUP}\"]\n{pods}{prefix}\n\
                 [terway.pool]\nmin = {min}\nmax = {max}\n",
                mode = st.mode.as_str(),
                min = st.tuning.pool.map_or(TERWAY_POOL_MIN, |p| p.0),
                max = st.tuning.pool.map_or(TERWAY_POOL_MAX, |p| p.1),
                vsw = if other { OTHER_VSWITCH } else { NODE_VSWITCH },
                prefix = if st.tuning.ip_prefix {
                    "ip_prefix = true\n"
                } else {
                    ""
                },
                pods = if kube {
                    String::new()
                } else {
                    format!("pod_info_dir = \"{}\"\n", self.pod_info_dir(i).display())
                },
            ),
        };
        let ebpf = st.datapath == Datapath::Ebpf;
        let backend = match (ebpf, st.backend) {
            (false, _) => backend,
            (true, Backend::Flannel) => format!("{backend}fast_path = true\n"),
            (true, Backend::Terway) => {
                backend.replacen("[terway]\n", "[terway]\ndatapath = \"ebpf\"\n", 1)
            }
        };
        // NetworkPolicy (`--policy`) on the cluster's nodes; the second cluster's keeps it off.
        let policy = st.policy && !other;
        let policy_section = if policy && kube {
            "\n[policy]\nenabled = true\n".to_string()
        } else if policy {
            format!(
                "\n[policy]\nenabled = true\nmanifests_dir = \"{}\"\n",
                super::policy::dir(self).display()
            )
        } else {
            String::new()
        };
        // The eBPF Service load balancer (`--services`) on the cluster's nodes.
        let services = st.services && !other;
        let services_section = if services && kube {
            "\n[services]\nenabled = true\n".to_string()
        } else if services {
            format!(
                "\n[services]\nenabled = true\nmanifests_dir = \"{}\"\n",
                super::services::dir(self).display()
            )
        } else {
            String::new()
        };
        let service_cidr = match (services, st.ip_stack) {
            (false, _) => String::new(),
            (true, IpStack::Ipv4) => {
                format!("service_cidr = \"{}\"\n", super::services::SERVICE_CIDR)
            }
            (true, IpStack::Dual) => format!(
                "service_cidr = \"{},{}\"\n",
                super::services::SERVICE_CIDR,
                super::services::SERVICE_CIDR6
            ),
        };
        // fallback = false: a lab that asked for eBPF fails loudly instead of quietly
        // running without it.
        let bpf = match (ebpf, policy || services) {
            (false, false) => String::new(),
            (e, _) => format!(
                "\n[bpf]\npin_dir = \"{}\"\n{}",
                self.pin_dir(i).display(),
                if e { "fallback = false\n" } else { "" }
            ),
        };
        let cloud = if st.mode.needs_cloud() && !(other && st.backend == Backend::Flannel) {
            self.cloud_section(i)
        } else {
            String::new()
        };
        format!(
            "[cluster]\nname = \"{cluster}\"\nip_stack = \"{stack}\"\n{service_cidr}\n{backend}\n[cni]\nnetwork_name = \"{network}\"\n\n\
             [store]\n{store}lease_ttl_seconds = {ttl}\n\n\
             [node]\nname = \"{name}\"\nstate_dir = \"{dir}/state\"\nrun_dir = \"{dir}/run\"\n\n\
             [agent]\nlisten = \"{AGENT_LISTEN}\"\nreconcile_seconds = 1\n{bpf}{policy_section}{services_section}{cloud}",
            stack = st.ip_stack.as_str(),
            ttl = st.lease_ttl_seconds,
            name = self.node_name(i),
            dir = dir.display(),
        )
    }

    /// Writes node `i`'s config and runs `unicni install --with-agent` in its namespace.
    pub fn install_node(&self, i: usize, st: &LabState) -> Result<()> {
        std::fs::create_dir_all(self.node_dir(i))?;
        if st.backend == Backend::Flannel && st.ip_stack == IpStack::Dual {
            self.add_node_ipv6(i)?;
        }
        unicni_fsutil::write_atomic(
            &self.node_config(i),
            self.node_config_text(i, st).as_bytes(),
            0o644,
        )?;
        let out = self
            .node_command(i)?
            .arg(&self.exe)
            .arg("install")
            .arg("--with-agent")
            .arg("--config")
            .arg(self.node_config(i))
            .arg("--cni-conf-dir")
            .arg(self.conf_dir(i))
            .arg("--cni-bin-dir")
            .arg(self.bin_dir())
            .output()
            .context("run unicni install")?;
        if !out.status.success() {
            bail!(
                "unicni install on node {i} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Starts node `i`'s agent in its own session (it outlives this command) and returns its PID.
    pub fn start_agent(&self, i: usize) -> Result<u32> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.node_dir(i).join("agent.log"))?;
        let child = self
            .node_command(i)?
            .arg(&self.exe)
            .args(["agent", "--config"])
            .arg(self.node_config(i))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("start unicni agent")?;
        // `ip netns exec` execs the command: this PID is the agent's.
        Ok(child.id())
    }

    pub fn subnet_file(&self, i: usize) -> std::path::PathBuf {
        self.node_dir(i).join("run/flannel/subnet.json")
    }

    /// Waits until node `i`'s agent is ready: flannel has published its lease (returns
    /// the subnet), terway answers 200 on `/readyz` (returns its reason line).
    pub fn wait_ready(
        &self,
        i: usize,
        pid: u32,
        backend: Backend,
        timeout: Duration,
    ) -> Result<String> {
        let until = Instant::now() + timeout;
        loop {
            match backend {
                Backend::Flannel => {
                    if let Ok(b) = std::fs::read(self.subnet_file(i)) {
                        let v: serde_json::Value = serde_json::from_slice(&b)?;
                        return Ok(v["subnet"].as_str().unwrap_or_default().to_string());
                    }
                }
                Backend::Terway => {
                    if let Ok(r) = self.agent_get(i, "/readyz") {
                        if r.starts_with("HTTP/1.1 200") {
                            return Ok(http_body(&r));
                        }
                    }
                }
            }
            if !alive(pid) || Instant::now() > until {
                let log =
                    std::fs::read_to_string(self.node_dir(i).join("agent.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let readyz = match backend {
                    Backend::Terway => self
                        .agent_get(i, "/readyz")
                        .map(|r| format!("; /readyz: {}", http_body(&r)))
                        .unwrap_or_default(),
                    Backend::Flannel => String::new(),
                };
                bail!(
                    "the agent of node {i} is not ready ({}{readyz}); last log lines:\n{}",
                    if alive(pid) { "timed out" } else { "it exited" },
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `request` (a whole HTTP/1.1 request with `Connection: close`) to `addr` from
    /// inside namespace `ns`; returns the whole reply (status line, headers, body:
    /// [`http_body`] splits off the body).
    pub fn http(&self, ns: &str, addr: &str, request: &str) -> Result<String> {
        let netns = unicni_net::NetNs::open(std::path::Path::new(&format!("/var/run/netns/{ns}")))?;
        let to: std::net::SocketAddr = addr.parse().with_context(|| format!("address {addr}"))?;
        let mut stream = netns
            .run(|| std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)))?
            .with_context(|| format!("reach {addr} in {ns}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(request.as_bytes())?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    }

    /// GET `path` from node `i`'s agent endpoint (inside the node's namespace).
    pub fn agent_get(&self, i: usize, path: &str) -> Result<String> {
        self.http(
            &self.node_ns(i),
            AGENT_LISTEN,
            &format!("GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n"),
        )
    }

    /// A gauge value from node `i`'s /metrics.
    pub fn agent_metric(&self, i: usize, name: &str) -> Option<f64> {
        let body = self.agent_get(i, "/metrics").ok()?;
        body.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    /// Waits until every running agent has all its peers programmed.
    pub fn wait_converged(&self, st: &LabState, timeout: Duration) -> Result<()> {
        let running: Vec<usize> = st
            .nodes
            .iter()
            .filter(|n| n.agent_pid.is_some_and(alive))
            .map(|n| n.index)
            .collect();
        let want = running.len().saturating_sub(1) as f64;
        let until = Instant::now() + timeout;
        loop {
            let behind: Vec<usize> = running
                .iter()
                .copied()
                .filter(|&i| self.agent_metric(i, "unicni_agent_peers") < Some(want))
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("agents of nodes {behind:?} did not program all {want} peers in {timeout:?}; see their agent.log under {}", self.root.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until no address in these namespaces is still in IPv6 duplicate address
    /// detection: a link just brought up (an ENI link, an ENI moved into a pod) has only a
    /// tentative link-local address for a second or two, and cannot resolve its gateway
    /// until then.
    pub fn wait_ipv6_settled(&self, namespaces: &[String], timeout: Duration) -> Result<()> {
        let until = Instant::now() + timeout;
        loop {
            let busy: Vec<&String> = namespaces
                .iter()
                .filter(|ns| {
                    Command::new("ip")
                        .args(["-n", ns, "-6", "-o", "addr", "show", "tentative"])
                        .output()
                        .map(|o| !o.stdout.is_empty())
                        .unwrap_or(false)
                })
                .collect();
            if busy.is_empty() {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("IPv6 addresses in {busy:?} still tentative after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stop_agent(pid: u32) {
        terminate(pid, Duration::from_secs(5));
    }
}

/// The body of an HTTP/1.1 response, trimmed.
pub fn http_body(response: &str) -> String {
    response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string()
}

pub fn alive(pid: u32) -> bool {
    // A zombie child of ours still "exists" for kill(0): check its state too.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// SIGTERM, wait, then SIGKILL: one process, by PID.
pub fn terminate(pid: u32, grace: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let p = Pid::from_raw(pid as i32);
    if kill(p, Signal::SIGTERM).is_err() {
        return;
    }
    let until = Instant::now() + grace;
    while alive(pid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive(pid) {
        let _ = kill(p, Signal::SIGKILL);
    }
    // Reap it if it is our child (lab run); harmless otherwise.
    let _ = nix::sys::wait::waitpid(p, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
}

/// Processes whose command line mentions `needle` (the lab root): agents and etcd left
/// by a crashed lab. Matched by their own arguments, then signalled one by one by PID.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.split(' ').any(|a| a.starts_with(needle)) {
                out.push(pid);
            }
        }
    }
    out
}

/// Starts `exe agent --config <config>` in namespace `ns`, in a process group of its own
/// (stopped as one), with stdout and stderr to `log`.
pub(super) fn spawn_agent(
    ns: &str,
    exe: &std::path::Path,
    config: &std::path::Path,
    log: std::fs::File,
) -> Result<std::process::Child> {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(exe)
        .args(["agent", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("start unicni agent")
}

#[cfg(test)]
mod tests {
    use super::super::topology::{IpStack, OTHER};
    use super::*;

    fn state(mode: Mode, ip_stack: IpStack) -> LabState {
        LabState::new(mode, ip_stack, StoreChoice::File, 10)
    }

    #[test]
    fn ebpf_node_configs_ask_for_the_fast_path_with_a_pin_dir_of_their_own() {
        let lab = Lab::new(Some("unit")).unwrap();
        for mode in [Mode::SharedEni, Mode::Vxlan] {
            let mut st = state(mode, IpStack::Ipv4);
            st.datapath = Datapath::Ebpf;
            let mut pins = Vec::new();
            for i in [1, 2, OTHER] {
                let text = lab.node_config_text(i, &st);
                let c = unicni_config::load_str(&text, unicni_config::Format::Toml)
                    .unwrap_or_else(|e| panic!("{mode:?} node {i}: {e}\n{text}"));
                match mode.backend() {
                    Backend::Terway => assert_eq!(c.terway.datapath.as_str(), "ebpf"),
                    Backend::Flannel => assert!(c.flannel.fast_path),
                }
                assert!(!c.bpf.fallback);
                assert!(c.bpf.pin_dir.starts_with("/run/unicni-lab-unit/bpf/"));
                pins.push(c.bpf.pin_dir);
            }
            pins.sort();
            pins.dedup();
            assert_eq!(pins.len(), 3, "one pin directory per node");
        }
    }

    /// `--policy`: the cluster's nodes (also ones `lab add-node` adds, which get their
    /// config from here) enforce NetworkPolicy with a pin directory of their own; the
    /// second cluster's node does not.
    #[test]
    fn policy_node_configs_enable_policy_on_the_cluster_only() {
        let lab = Lab::new(Some("unit")).unwrap();
        for mode in [Mode::Vxlan, Mode::SharedEni] {
            let mut st = state(mode, IpStack::Ipv4);
            st.policy = true;
            for i in [1, 3, OTHER] {
                let text = lab.node_config_text(i, &st);
                let c = unicni_config::load_str(&text, unicni_config::Format::Toml)
                    .unwrap_or_else(|e| panic!("{mode:?} node {i}: {e}\n{text}"));
                assert_eq!(c.policy.enabled, i != OTHER, "{mode:?} node {i}");
                if i != OTHER {
                    assert_eq!(
                        c.policy.manifests_dir.as_deref(),
                        Some("/run/unicni-lab-unit/policies")
                    );
                    assert_eq!(c.bpf.pin_dir, lab.pin_dir(i).display().to_string());
                }
            }
        }
    }

    /// `--services`: the cluster's nodes (not the second cluster's) load balance Services
    /// from the lab's directory with a pin dir of their own; dual stack adds an IPv6
    /// service CIDR.
    #[test]
    fn services_node_configs_enable_services_on_the_cluster_only() {
        let lab = Lab::new(Some("unit")).unwrap();
        for (mode, stack) in [
            (Mode::Vxlan, IpStack::Ipv4),
            (Mode::Vxlan, IpStack::Dual),
            (Mode::SharedEni, IpStack::Ipv4),
        ] {
            let mut st = state(mode, stack);
            st.services = true;
            for i in [1, 3, OTHER] {
                let text = lab.node_config_text(i, &st);
                let c = unicni_config::load_str(&text, unicni_config::Format::Toml)
                    .unwrap_or_else(|e| panic!("{mode:?} node {i}: {e}\n{text}"));
                assert_eq!(c.services.enabled, i != OTHER, "{mode:?} node {i}");
                if i != OTHER {
                    assert_eq!(
                        c.services.manifests_dir.as_deref(),
                        Some("/run/unicni-lab-unit/services")
                    );
                    assert_eq!(c.bpf.pin_dir, lab.pin_dir(i).display().to_string());
                    assert_eq!(
                        c.cluster.service_cidrs().len(),
                        1 + (stack == IpStack::Dual) as usize
                    );
                }
            }
        }
    }

    /// `--store kubernetes`: the cluster's nodes use the API in-cluster (no kubeconfig),
    /// read pods and policies from it (no pod info or manifests directory); the second
    /// cluster's node keeps its own file store.
    #[test]
    fn kube_node_configs_use_the_api_in_cluster() {
        let lab = Lab::new(Some("unit")).unwrap();
        for mode in [Mode::Vxlan, Mode::SharedEni] {
            let mut st = LabState::new(mode, IpStack::Ipv4, StoreChoice::Kubernetes, 10);
            st.policy = true;
            for i in [1, OTHER] {
                let text = lab.node_config_text(i, &st);
                let c = unicni_config::load_str(&text, unicni_config::Format::Toml)
                    .unwrap_or_else(|e| panic!("{mode:?} node {i}: {e}\n{text}"));
                let kube = i != OTHER;
                assert_eq!(
                    c.store.kind.as_str(),
                    if kube { "kubernetes" } else { "file" }
                );
                assert_eq!(c.store.kubeconfig, None);
                if kube {
                    assert!(
                        c.policy.enabled && c.policy.manifests_dir.is_none(),
                        "{text}"
                    );
                }
                if mode == Mode::SharedEni {
                    assert_eq!(c.terway.pod_info_dir.is_none(), kube, "{text}");
                }
            }
        }
    }

    /// `--ip-prefix` reaches the terway config.
    #[test]
    fn prefix_mode_reaches_the_node_config() {
        let lab = Lab::new(Some("unit")).unwrap();
        let mut st = state(Mode::SharedEni, IpStack::Ipv4);
        st.tuning.ip_prefix = true;
        let text = lab.node_config_text(1, &st);
        let c = unicni_config::load_str(&text, unicni_config::Format::Toml)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(c.terway.ip_prefix, "{text}");
        st.tuning.ip_prefix = false;
        let c = unicni_config::load_str(&lab.node_config_text(1, &st), unicni_config::Format::Toml)
            .unwrap();
        assert!(!c.terway.ip_prefix);
    }

    /// Every node config the lab writes is one `unicni install` accepts.
    #[test]
    fn node_configs_load_and_validate() {
        let lab = Lab::new(Some("unit")).unwrap();
        for (mode, stack) in [
            (Mode::Vxlan, IpStack::Ipv4),
            (Mode::HostGw, IpStack::Ipv4),
            (Mode::VpcRoute, IpStack::Ipv4),
            (Mode::SharedEni, IpStack::Ipv4),
            (Mode::SharedEni, IpStack::Dual),
            (Mode::ExclusiveEni, IpStack::Dual),
            (Mode::Vxlan, IpStack::Dual),
            (Mode::HostGw, IpStack::Dual),
        ] {
            let st = state(mode, stack);
            for i in [1, OTHER] {
                let text = lab.node_config_text(i, &st);
                let c = unicni_config::load_str(&text, unicni_config::Format::Toml)
                    .unwrap_or_else(|e| panic!("{mode:?} node {i}: {e}\n{text}"));
                assert_eq!(c.cluster.name, if i == OTHER { "lab2" } else { "lab" });
                assert_eq!(c.backend.kind.as_str(), mode.backend().as_str());
                match mode.backend() {
                    Backend::Terway => {
                        assert_eq!(c.terway.mode.as_str(), mode.as_str());
                        assert_eq!(
                            c.terway.vswitches,
                            [if i == OTHER { "vsw-pod-b" } else { "vsw-pod-a" }]
                        );
                        assert_eq!(c.terway.security_groups, ["sg-lab"]);
                        assert!(c.terway.pod_info_dir.is_some());
                        assert!(c.cloud.endpoint.is_some(), "{text}");
                    }
                    Backend::Flannel => {
                        let want = if i == OTHER {
                            "10.251.0.0/16"
                        } else {
                            "10.250.0.0/16"
                        };
                        assert!(text.contains(want), "{text}");
                        // The second cluster has no route-table entries: never vpc-route.
                        if i == OTHER {
                            assert!(!text.contains("vpc-route"), "{text}");
                        }
                        let want6 = match (stack, i) {
                            (IpStack::Ipv4, _) => None,
                            (IpStack::Dual, OTHER) => Some("fd00:10:251::/56"),
                            (IpStack::Dual, _) => Some("fd00:10:250::/56"),
                        };
                        assert_eq!(c.flannel.ipv6_network.as_deref(), want6, "{text}");
                    }
                }
            }
        }
    }
}

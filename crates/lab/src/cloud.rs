//! The lab's cloud (vpc-route mode): `unicni cloud-sim --mirror-routes` inside the VPC
//! namespace, one emulated instance per node (primary IP = the node's underlay address),
//! so every Available route entry becomes a route of the VPC router namespace, and every
//! attached ENI a link (its MAC) in its node's namespace, bridged onto the VPC's `br0`.
//!
//! Besides the nodes' vSwitch (`vsw-lab`, the underlay) the emulated VPC has the pod
//! vSwitches of [`POD_VSWITCHES`], dual-stack, whose gateways (`.253`, `…::1`) the VPC
//! router owns on `br0`: a pod with an ENI address reaches the VPC through them.

use super::topology::{in_ns, Lab, CLOUD_PORT, POD_VSWITCHES, SECURITY_GROUP, VPC_PREFIX};
use anyhow::{bail, Context, Result};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use unicni_cloud_sim::{AccessKey, InstanceSpec, Profile, SimConfig, VSwitchSpec};

/// 3 ENIs (2 for pods), 6 IPv4 and 6 IPv6 addresses each.
const INSTANCE_TYPE: &str = "ecs.g7.large";
/// Nodes beyond `--nodes` whose ENIs still become real links (`lab add-node`).
pub const SPARE_NODES: usize = 4;
const KEY_ID: &str = "unicni-lab";
const KEY_SECRET: &str = "unicni-lab-secret";

impl Lab {
    fn cloud_dir(&self) -> PathBuf {
        self.root.join("cloud")
    }
    pub fn cloud_endpoint(&self) -> String {
        format!("http://{}:{CLOUD_PORT}", self.outside_ip())
    }
    pub fn instance_id(&self, i: usize) -> String {
        format!("i-{}-{}", self.prefix, self.node_tag(i))
    }
    fn credentials_file(&self) -> PathBuf {
        self.cloud_dir().join("credentials.toml")
    }

    /// Node `i`'s `[cloud]` section: the emulator, its own instance's metadata view, and
    /// the access key in a file (as a real node would mount a secret).
    pub fn cloud_section(&self, i: usize) -> String {
        format!(
            "\n[cloud]\nregion = \"cn-hangzhou\"\nendpoint = \"{e}\"\nmetadata_endpoint = \"{e}/instances/{id}\"\n\
             credentials_file = \"{c}\"\n",
            e = self.cloud_endpoint(),
            id = self.instance_id(i),
            c = self.credentials_file().display(),
        )
    }

    /// The nodes' instance type: [`INSTANCE_TYPE`] unless `lab up` was told otherwise
    /// (recorded next to the emulator's files, for nodes added later).
    fn instance_type(&self) -> String {
        std::fs::read_to_string(self.cloud_dir().join("instance-type"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| INSTANCE_TYPE.into())
    }

    fn instance_spec(&self, i: usize) -> InstanceSpec {
        InstanceSpec {
            id: self.instance_id(i),
            instance_type: self.instance_type(),
            vswitch_id: "vsw-lab".into(),
            primary_ip: Some(self.node_ip(i)),
            metadata_addresses: vec![self.node_ip(i)],
            ram_role: None,
        }
    }

    /// Starts the emulator with one instance per node in `nodes` (indices; [`OTHER`] is the
    /// second cluster's node) and waits until it answers. The ENI materializer also knows
    /// the namespaces of up to [`SPARE_NODES`] nodes `lab add-node` may add. ENIs take
    /// `attach_delay_ms` to attach and to detach (100 ms when unset), unless `profile`
    /// (the emulator's latency profile) replaces the delays.
    pub fn start_cloud(
        &self,
        nodes: &[usize],
        quota: u32,
        attach_delay_ms: Option<u64>,
        profile: Profile,
        instance_type: Option<&str>,
    ) -> Result<u32> {
        let dir = self.cloud_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        if let Some(t) = instance_type {
            std::fs::write(dir.join("instance-type"), t)
                .with_context(|| format!("write {}", dir.join("instance-type").display()))?;
        }
        let config = SimConfig {
            credentials: vec![AccessKey {
                access_key_id: KEY_ID.into(),
                access_key_secret: KEY_SECRET.into(),
            }],
            vswitches: std::iter::once(VSwitchSpec {
                id: "vsw-lab".into(),
                zone: "cn-hangzhou-a".into(),
                cidr: format!("{VPC_PREFIX}.0/24"),
                ipv6_cidr: None,
            })
            .chain(POD_VSWITCHES.iter().map(|v| VSwitchSpec {
                id: v.id.into(),
                zone: v.zone.into(),
                cidr: v.cidr.into(),
                ipv6_cidr: Some(v.ipv6_cidr.into()),
            }))
            .collect(),
            security_groups: vec![SECURITY_GROUP.into()],
            instances: nodes.iter().map(|&i| self.instance_spec(i)).collect(),
            attach_delay_ms: attach_delay_ms.unwrap_or(100),
            detach_delay_ms: attach_delay_ms.unwrap_or(100),
            route_pending_ms: 200,
            route_table_quota: quota,
            profile,
            ..Default::default()
        };
        let config_file = dir.join("sim.toml");
        unicni_fsutil::write_atomic(
            &config_file,
            toml::to_string_pretty(&config)
                .context("render the emulator config")?
                .as_bytes(),
            0o644,
        )?;
        unicni_fsutil::write_atomic(
            &self.credentials_file(),
            format!("access_key_id = \"{KEY_ID}\"\naccess_key_secret = \"{KEY_SECRET}\"\n")
                .as_bytes(),
            0o600,
        )?;
        let vpc = self.vpc_ns();
        self.add_pod_vswitch_gateways()?;
        let last = nodes.iter().copied().max().unwrap_or(0);
        let netns_of: Vec<usize> = nodes
            .iter()
            .copied()
            .chain(last + 1..=last + SPARE_NODES)
            .collect();
        let log = std::fs::File::create(dir.join("cloud-sim.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &vpc])
            .arg(&self.exe)
            .arg("cloud-sim")
            .arg("--listen")
            .arg(format!("{}:{CLOUD_PORT}", self.outside_ip()))
            .arg("--config")
            .arg(&config_file)
            .arg("--state")
            .arg(dir.join("state.json"))
            .arg("--mirror-routes")
            .arg("--materialize-enis")
            .args(netns_of.iter().flat_map(|&i| {
                [
                    "--instance-netns".to_string(),
                    format!("{}={}", self.instance_id(i), self.node_ns(i)),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("start unicni cloud-sim")?;
        let pid = child.id();
        let ns = unicni_net::NetNs::open(std::path::Path::new(&format!("/var/run/netns/{vpc}")))?;
        let addr: std::net::SocketAddr = format!("{}:{CLOUD_PORT}", self.outside_ip()).parse()?;
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until && super::nodes::alive(pid) {
            let up = ns.run(|| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            })?;
            if up {
                return Ok(pid);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        super::nodes::terminate(pid, Duration::from_secs(2));
        bail!(
            "the cloud emulator did not come up on {addr}; see {}",
            dir.join("cloud-sim.log").display()
        )
    }

    /// The VPC router owns each pod vSwitch's gateways and forwards both families.
    fn add_pod_vswitch_gateways(&self) -> Result<()> {
        let vpc = self.vpc_ns();
        in_ns(&vpc, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
        for v in POD_VSWITCHES.iter().filter(|v| v.routed) {
            let net: ipnet::Ipv4Net = v.cidr.parse()?;
            let gw = std::net::Ipv4Addr::from(u32::from(net.broadcast()) - 2);
            let net6: ipnet::Ipv6Net = v.ipv6_cidr.parse()?;
            let gw6 = std::net::Ipv6Addr::from(u128::from(net6.network()) + 1);
            let (a4, a6) = (
                format!("{gw}/{}", net.prefix_len()),
                format!("{gw6}/{}", net6.prefix_len()),
            );
            in_ns(&vpc, &["ip", "addr", "add", &a4, "dev", "br0"])?;
            in_ns(
                &vpc,
                &["ip", "-6", "addr", "add", &a6, "dev", "br0", "nodad"],
            )?;
        }
        Ok(())
    }

    /// Registers node `i`'s instance with the running emulator (its admin API), for a node
    /// added after `lab up`.
    pub fn register_instance(&self, i: usize) -> Result<()> {
        let spec = self.instance_spec(i);
        let body = serde_json::to_string(&spec)?;
        let reply = self.http(
            &self.vpc_ns(),
            &format!("{}:{CLOUD_PORT}", self.outside_ip()),
            &format!(
                "POST /_sim/instances HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )?;
        if !reply.starts_with("HTTP/1.1 200") {
            bail!(
                "the cloud emulator refused instance {}: {}",
                spec.id,
                reply.lines().last().unwrap_or_default()
            );
        }
        Ok(())
    }

    /// The lab's VPC and cloud for node `i` alone, without agents: the VPC router, the
    /// node's namespace on it, and the emulator with the node's instance, metadata view
    /// and ENIs materialized in that namespace. For harnesses that run the node's agent
    /// themselves; [`crate::destroy`] removes it all. Returns the emulator's PID.
    pub fn vpc_node_with_cloud(&self, i: usize) -> Result<u32> {
        self.create_vpc()?;
        self.create_node(i)?;
        self.start_cloud(&[i], 50, None, Profile::default(), None)
    }
}

//! `unicni lab`: a whole flannel or terway cluster on this machine, built through the real
//! code paths: a simulated VPC (a namespace with a bridge; the cloud emulator when the
//! backend needs one), a VPC host on a subnet of its own, node namespaces each running the
//! real `unicni install` and `unicni agent`, pods attached by executing the installed
//! plugin inside their node's namespace, a second cluster (one node, one pod) in the same
//! VPC, and checks with real packets whose expected outcome is what the backend's design
//! says. Everything carries the `ulab` prefix so `unicni lab down` can remove it after a
//! crash.
//!
//! A library so that the harness, the checks and the benchmarks stay out of the binary's
//! `src/`; `unicni lab` parses [`Args`] and calls [`run`]. The lab runs the binary it is
//! linked into (`std::env::current_exe`) as every node's `unicni install` / `unicni agent`
//! and as the CNI plugin, so [`run`] is only meaningful inside the `unicni` binary.

mod bench;
mod bench_services;
mod checks;
mod cloud;
mod etcd;
mod kube;
pub mod kubeproxy;
mod nodes;
mod pods;
mod policy;
mod scale;
mod services;
mod status;
mod topology;
mod underlay;

// For harnesses that run their own agents on a lab node (tests/daemonset_cri.rs runs
// the DaemonSet through CRI on a node of the lab's VPC).
pub use topology::{Lab, NODE_VSWITCH, SECURITY_GROUP, VPC_PREFIX};

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use topology::{
    Backend, Datapath, IpStack, LabState, Mode, NodeState, PodState, StoreChoice, Tuning,
    ANNOTATED_VSWITCH, OTHER,
};
use unicni_cloud_sim::Profile as CloudProfile;

#[derive(clap::Args)]
pub struct Args {
    /// Run a separate lab next to the default one (names `ulab<ID>-*`, root /run/unicni-lab-<ID>).
    #[arg(long, global = true)]
    id: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Clone)]
pub(crate) struct UpOpts {
    /// The backend to run.
    #[arg(long, value_enum, default_value_t = Backend::Flannel)]
    backend: Backend,
    /// The backend's mode. flannel: vxlan (default), host-gw or vpc-route; terway:
    /// shared-eni (default) or exclusive-eni.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Pod address families: ipv4, or dual (terway; flannel vxlan and host-gw).
    #[arg(long, value_enum, default_value_t = IpStack::Ipv4)]
    ip_stack: IpStack,
    /// Node namespaces, each running its own agent.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=200))]
    nodes: u16,
    /// Pods per node, created through CNI ADD.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=100))]
    pods_per_node: u16,
    /// Where leases live: a shared file store, a real etcd server in the VPC namespace, or
    /// the Kubernetes API (`unicni kube-sim` in the VPC namespace; the lab writes Nodes,
    /// Pods and NetworkPolicies as the control plane would).
    #[arg(long, value_enum, default_value_t = StoreChoice::File)]
    store: StoreChoice,
    /// Subnet lease time-to-live in seconds (etcd needs 10 or more).
    #[arg(long, default_value_t = 10)]
    lease_ttl: u64,
    /// vpc-route: custom entries the emulated VPC route table accepts (the vendor's
    /// default is 200); nodes beyond it stay not ready with the quota error.
    #[arg(long, default_value_t = 200)]
    route_quota: u32,
    /// Leave out the second cluster (one node, one pod in the same VPC) and the check
    /// that needs it.
    #[arg(long)]
    no_second_cluster: bool,
    /// Pool size and emulator delays (`lab bench-add` sets them).
    #[arg(skip)]
    tuning: Tuning,
    /// The cloud emulator's latency profile (terway and vpc-route labs): `default`,
    /// `none` or `realistic` (docs/cloud.md, "Latency profiles").
    #[arg(long, value_name = "NAME", default_value_t = CloudProfile::Default)]
    cloud_profile: CloudProfile,
    /// terway shared-eni: `routing`, or `ebpf` for the eBPF fast path
    /// (`terway.datapath`); flannel: `ebpf` turns on the same-node fast path.
    #[arg(long, value_enum, default_value_t = Datapath::Routing)]
    datapath: Datapath,
    /// Enforce NetworkPolicy on every node of the cluster (`policy.enabled`, manifests
    /// in `<root>/policies`); the checks then also run the policy matrix.
    #[arg(long)]
    policy: bool,
    /// terway shared-eni: prefix mode (`terway.ip_prefix`): the pool assigns /28
    /// prefixes and pods take addresses from them.
    #[arg(long)]
    ip_prefix: bool,
    /// Load balance ClusterIP Services in eBPF on every node of the cluster
    /// (`services.enabled`; manifests in `<root>/services`, or the API with `--store
    /// kubernetes`): a TCP, a UDP, a ClientIP-affinity and (dual stack) an IPv6 Service with
    /// a backend pod on nodes 1 and 2; the checks then also probe them.
    #[arg(long)]
    services: bool,
}

impl UpOpts {
    /// The mode, defaulted per backend; refuses a mode or IP stack of the other backend.
    fn mode(&self) -> Result<Mode> {
        let mode = self.mode.unwrap_or(match self.backend {
            Backend::Flannel => Mode::Vxlan,
            Backend::Terway => Mode::SharedEni,
        });
        if mode.backend() != self.backend {
            bail!(
                "--mode {} is a {} mode; --backend {} takes {}",
                mode.as_str(),
                mode.backend().as_str(),
                self.backend.as_str(),
                match self.backend {
                    Backend::Flannel => "vxlan, host-gw or vpc-route",
                    Backend::Terway => "shared-eni or exclusive-eni",
                }
            );
        }
        if self.ip_prefix && mode != Mode::SharedEni {
            bail!("--ip-prefix is terway shared-eni's prefix mode; use --backend terway --mode shared-eni");
        }
        if self.datapath == Datapath::Ebpf && mode == Mode::ExclusiveEni {
            bail!("--datapath ebpf is for shared-eni (an exclusive-ENI pod owns its ENI)");
        }
        if self.services {
            services::admit(self.nodes, self.pods_per_node)?;
        }
        if self.ip_stack == IpStack::Dual && mode == Mode::VpcRoute {
            bail!("--ip-stack dual takes --mode vxlan or host-gw (vpc-route is IPv4 only)");
        }
        Ok(mode)
    }
}

#[derive(clap::Subcommand)]
enum Command {
    /// Build a lab, check it and tear it down (what `unicni lab` alone does).
    Run {
        #[command(flatten)]
        up: UpOpts,
        /// Leave the lab up after the checks (remove it with `unicni lab down`).
        #[arg(long)]
        keep: bool,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Build a lab and leave it running.
    Up {
        #[command(flatten)]
        up: UpOpts,
    },
    /// Build a flannel (vxlan) lab and a terway (shared-eni) lab side by side (lab IDs
    /// `<id>f` and `<id>t`, id `cmp` by default), run the checks on both and print one
    /// table: check | flannel | terway. Both are removed afterwards unless --keep.
    Compare {
        #[arg(long)]
        keep: bool,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Run the checks on the running lab: connectivity, and what the backend's design
    /// promises (re-creates pod n1-p1 on the way). With `lab up --policy` also the
    /// NetworkPolicy matrix: the upstream recipes on real traffic, a change applied within
    /// 1 s, an established connection across an agent restart and a policy update.
    Check {
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Remove everything a lab created (processes, namespaces, files), also after a crash.
    Down,
    /// What the running lab is made of: backend, mode and store, its API server, etcd or
    /// cloud emulator and each node's agent, with PIDs and whether they still run.
    Status,
    /// Add one node to the running lab (namespace, install, agent); it gets no pods. Fails
    /// with the agent's not-ready reason when it cannot become ready (e.g. the vpc-route
    /// route-table quota), leaving the node in place to look at.
    AddNode,
    /// Stop or start one node's agent (to see restarts and lease expiry).
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Measure cross-node pod-to-pod TCP throughput and request/response latency for
    /// flannel vxlan and host-gw and terway shared-eni (routing, and the eBPF fast path)
    /// and exclusive-eni, against the two nodes' own underlay (the limit), in one run: one
    /// 2-node lab per design (lab IDs `<id>v`, `<id>g`, `<id>s`, `<id>e`, `<id>x`; id `bn`
    /// by default), all up together while every path is measured in interleaved slices
    /// (ratios per slice against the limit's slice of the same turn), then all removed.
    /// With --policies N: NetworkPolicy cost end to end instead (lab `<id>p`, id `bp`).
    Bench {
        /// Seconds of each iperf3 run.
        #[arg(long, default_value_t = 2)]
        seconds: u32,
        /// Request/response rounds per slice (1 byte each way, one kept-open connection).
        #[arg(long, default_value_t = 1500)]
        rounds: usize,
        /// iperf3 runs of every path, taken in turn (all labs stay up meanwhile).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Request/response slices of every path, taken in turn (the order rotates).
        #[arg(long, default_value_t = 24)]
        slices: usize,
        /// Client on CPU 0, servers on CPU 1, for every path alike.
        #[arg(long)]
        pin_cpus: bool,
        /// Measure N NetworkPolicies selecting the server pod vs none (terway shared-eni +
        /// eBPF, policy on; slices alternate): request/response and connection rate.
        #[arg(long, default_value_t = 0, conflicts_with_all = ["seconds", "repeats", "host_services"])]
        policies: usize,
        /// Before measuring, load kube-proxy's iptables-mode rules (iptables-legacy) for
        /// this many Services into every node namespace of every lab: KUBE-SERVICES walked
        /// by every new connection, connection tracking on. A real node's host stack has
        /// that; the lab's bare nodes do not. 0: bare nodes.
        #[arg(long, default_value_t = 0)]
        host_services: usize,
        /// The cloud emulator's latency profile in the terway labs.
        #[arg(long, value_name = "NAME", default_value_t = CloudProfile::Default)]
        cloud_profile: CloudProfile,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Measure terway pod ADD latency (the installed plugin executed in the node's
    /// namespace) with a warm pool and with an empty pool (each ADD goes to the cloud
    /// emulator), interleaved with the reference bridge + host-local plugins in the same
    /// node namespace: one 1-node lab per pool setting (lab IDs `<id>sw`, `<id>xw`,
    /// `<id>se`, `<id>xe`; id `ba` by default), each removed afterwards.
    BenchAdd {
        /// Measured ADDs per series (each followed by an unmeasured DEL).
        #[arg(long, default_value_t = 20)]
        pods: usize,
        /// The emulator's ENI attach (and detach) delay in ms; the emulator's default
        /// when unset.
        #[arg(long)]
        attach_delay_ms: Option<u64>,
        /// The cloud emulator's latency profile; `realistic` replaces the attach delay
        /// with the vendor's figures.
        #[arg(long, value_name = "NAME", default_value_t = CloudProfile::Default)]
        cloud_profile: CloudProfile,
        /// Which pool settings to measure.
        #[arg(long, default_value = "both", value_parser = ["warm", "empty", "both"])]
        pool: String,
        /// Where the reference plugins are (Debian: containernetworking-plugins).
        #[arg(long, default_value = "/usr/lib/cni")]
        reference_dir: std::path::PathBuf,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Measure a burst: N terway pods ADDed at once on a node with an empty pool (lab ID
    /// `<id>u`; id `bb` by default; nodes are ecs.c7.2xlarge: 3 pod ENIs of 15 addresses):
    /// wall time, ADD p50/p99, the cloud calls made, and the lower bound the cloud
    /// profile allows (one ENI create + attach, plus one round of parallel assign calls).
    BenchBurst {
        /// Pods ADDed at once.
        #[arg(long, default_value_t = 30)]
        pods: usize,
        /// The cloud emulator's latency profile.
        #[arg(long, value_name = "NAME", default_value_t = CloudProfile::Realistic)]
        cloud_profile: CloudProfile,
        /// Which pool to measure: single addresses (`off`), /28 prefixes
        /// (`on`, `terway.ip_prefix`), or one row of each (`both`).
        #[arg(long, default_value = "both", value_parser = ["both", "off", "on"])]
        prefix: String,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Measure a pod's connections to a ClusterIP with 100, 1,000 and 10,000 Services
    /// loaded: unicni's eBPF load balancer vs kube-proxy's iptables-mode rules (the
    /// target last in KUBE-SERVICES, the worst case; and one in the middle) vs the backend
    /// pod's own address, in one run: new connections per second and requests per second
    /// on a kept-open connection, interleaved slices (two flannel host-gw labs, IDs
    /// `<id>e` and `<id>k`; id `bs` by default), then both labs removed.
    BenchServices {
        /// Service counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
        services: Vec<usize>,
        /// Turns per Service count (each path one slice of each measure per turn).
        #[arg(long, default_value_t = 12)]
        slices: usize,
        /// Length of each slice in milliseconds.
        #[arg(long, default_value_t = 180)]
        slice_ms: u64,
        /// The iptables the kube-proxy-like rules go through.
        #[arg(long, value_enum, default_value_t = kubeproxy::Iptables::Legacy)]
        iptables: kubeproxy::Iptables,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// The Service backend server of `lab up --services`: answers every TCP line and UDP
    /// datagram with its pod name and the request's source address.
    #[command(hide = true)]
    SvcServe {
        #[arg(long)]
        name: String,
        #[arg(long)]
        port: u16,
        /// The lab's root, so that `lab down` finds the process.
        #[arg(long)]
        root: String,
    },
    /// The request/response server of `lab bench` (one connection, every byte echoed).
    #[command(hide = true)]
    BenchEcho {
        #[arg(long)]
        port: u16,
    },
    /// The agent at scale: N synthetic peers in the store programmed into one node
    /// namespace; prints the time to converge from empty and the agent's peak memory.
    Scale {
        #[arg(long, default_value_t = 15000)]
        peers: usize,
        #[arg(long, value_enum, default_value_t = Mode::Vxlan)]
        mode: Mode,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
}

#[derive(clap::Subcommand)]
enum AgentCmd {
    Stop {
        #[arg(long)]
        node: usize,
    },
    Start {
        #[arg(long)]
        node: usize,
    },
}

pub(crate) fn default_up() -> UpOpts {
    UpOpts {
        backend: Backend::Flannel,
        mode: None,
        ip_stack: IpStack::Ipv4,
        nodes: 2,
        pods_per_node: 2,
        store: StoreChoice::File,
        lease_ttl: 10,
        route_quota: 200,
        no_second_cluster: false,
        tuning: Tuning::default(),
        cloud_profile: CloudProfile::Default,
        datapath: Datapath::Routing,
        policy: false,
        ip_prefix: false,
        services: false,
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let lab = Lab::new(args.id.as_deref())?;
    let command = args.command.unwrap_or(Command::Run {
        up: default_up(),
        keep: false,
        output: "table".into(),
    });
    match command {
        Command::Run {
            up: opts,
            keep,
            output,
        } => {
            let started = Instant::now();
            let mut st = up_or_clean(&lab, &opts)?;
            step("checking connectivity");
            let mut results = checks::run(&lab, &mut st);
            results.extend(policy::run(&lab, &mut st));
            results.extend(services::run(&lab, &mut st));
            lab.save_state(&st)?;
            let failed = checks::print(&results, &output);
            if keep {
                eprintln!("lab left up; remove it with `unicni lab down`");
            } else {
                step("tearing down (CNI DEL, agents, namespaces)");
                teardown(&lab)?;
            }
            eprintln!("done in {:.1}s", started.elapsed().as_secs_f64());
            Ok(exit(failed))
        }
        Command::Up { up: opts } => {
            up_or_clean(&lab, &opts)?;
            eprintln!("lab is up: `unicni lab check`, `unicni lab down`");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { output } => {
            let mut st = lab.load_state()?;
            let mut results = checks::run(&lab, &mut st);
            results.extend(policy::run(&lab, &mut st));
            results.extend(services::run(&lab, &mut st));
            lab.save_state(&st)?;
            Ok(exit(checks::print(&results, &output)))
        }
        Command::Compare { keep, output } => compare(args.id.as_deref(), keep, &output),
        Command::Down => {
            teardown(&lab)?;
            eprintln!("lab removed");
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            status::print(&lab, &lab.load_state()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(c) => agent_cmd(&lab, c),
        Command::AddNode => add_node(&lab),
        Command::Bench {
            seconds,
            rounds,
            repeats,
            slices,
            pin_cpus,
            policies,
            host_services,
            cloud_profile,
            output,
        } => bench::run(
            args.id.as_deref(),
            &bench::BenchOpts {
                seconds,
                rounds,
                repeats,
                slices,
                host_services,
                pin_cpus,
                policies,
                cloud_profile,
            },
            &output,
        ),
        Command::BenchAdd {
            pods,
            attach_delay_ms,
            cloud_profile,
            pool,
            reference_dir,
            output,
        } => bench::run_add(
            args.id.as_deref(),
            pods,
            attach_delay_ms,
            cloud_profile,
            &pool,
            &reference_dir,
            &output,
        ),
        Command::BenchBurst {
            pods,
            cloud_profile,
            prefix,
            output,
        } => bench::run_burst(args.id.as_deref(), pods, cloud_profile, &prefix, &output),
        Command::BenchServices {
            services,
            slices,
            slice_ms,
            iptables,
            output,
        } => bench_services::run(
            args.id.as_deref(),
            &bench_services::Opts {
                services,
                slices,
                slice: Duration::from_millis(slice_ms),
                iptables,
            },
            &output,
        ),
        Command::BenchEcho { port } => bench::echo(port),
        Command::SvcServe { name, port, .. } => services::serve(&name, port),
        Command::Scale {
            peers,
            mode,
            output,
        } => scale::run(&lab, peers, mode, &output),
    }
}

fn exit(failed: usize) -> ExitCode {
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn step(what: &str) {
    eprintln!("==> {what}");
}

pub(crate) fn up_or_clean(lab: &Lab, opts: &UpOpts) -> Result<LabState> {
    if opts.store == StoreChoice::Etcd && opts.lease_ttl < 10 {
        bail!(
            "--lease-ttl {}: etcd leases need at least 10 seconds",
            opts.lease_ttl
        );
    }
    opts.mode()?;
    // A previous run may have crashed: start from nothing.
    destroy(lab)?;
    up(lab, opts).inspect_err(|_| {
        eprintln!(
            "lab up failed; removing what was built (logs were under {})",
            lab.root.display()
        );
        let _ = destroy(lab);
    })
}

/// What each terway pod's manifest says: the first pod of node 1 belongs to a
/// StatefulSet (a fixed IP), the last pod of the last node asks for another vSwitch by
/// annotation. Flannel pods carry nothing (neither exists in flannel's design).
fn pod_meta(
    backend: Backend,
    node: usize,
    j: usize,
    nodes: usize,
    per_node: usize,
) -> (BTreeMap<String, String>, Option<&'static str>) {
    let mut ann = BTreeMap::new();
    if backend == Backend::Flannel || node == OTHER {
        return (ann, None);
    }
    if node == 1 && j == 1 {
        return (ann, Some("StatefulSet"));
    }
    if node == nodes && j == per_node {
        ann.insert(
            checks::ANN_VSWITCHES.to_string(),
            ANNOTATED_VSWITCH.to_string(),
        );
    }
    (ann, Some("ReplicaSet"))
}

fn node_state(lab: &Lab, i: usize, pid: u32) -> NodeState {
    NodeState {
        index: i,
        name: lab.node_name(i),
        netns: lab.node_ns(i),
        ip: lab.node_ip(i),
        subnet: String::new(),
        agent_pid: Some(pid),
    }
}

fn up(lab: &Lab, o: &UpOpts) -> Result<LabState> {
    let started = Instant::now();
    let mode = o.mode()?;
    let n = o.nodes as usize;
    std::fs::create_dir_all(&lab.root).with_context(|| format!("create {}", lab.root.display()))?;
    step(&format!(
        "building the VPC, the VPC host and {n} node namespaces ({} / {}{}{}, {} store){}",
        o.backend.as_str(),
        mode.as_str(),
        match o.datapath {
            Datapath::Routing => String::new(),
            d => format!(", datapath {}", d.as_str()),
        },
        if o.ip_stack == IpStack::Dual {
            ", dual stack"
        } else {
            ""
        },
        o.store.as_str(),
        if o.no_second_cluster {
            ""
        } else {
            " + a second cluster's node"
        }
    ));
    lab.create_vpc()?;
    lab.create_host()?;
    let mut st = LabState {
        backend: o.backend,
        tuning: Tuning {
            ip_prefix: o.tuning.ip_prefix || o.ip_prefix,
            ..o.tuning.clone()
        },
        datapath: o.datapath,
        policy: o.policy,
        services: o.services,
        ..LabState::new(mode, o.ip_stack, o.store, o.lease_ttl)
    };
    if o.datapath == Datapath::Ebpf || o.policy || o.services {
        mount_bpffs(lab)?;
    }
    if o.services {
        let dir = services::dir(lab);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        mount_cgroup2(lab)?;
    }
    if o.policy {
        let dir = policy::dir(lab);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    }
    // The second cluster's node, then the cluster's: all are instances of the VPC.
    let all: Vec<usize> = (!o.no_second_cluster)
        .then_some(OTHER)
        .into_iter()
        .chain(1..=n)
        .collect();
    if mode.needs_cloud() {
        st.cloud_pid = Some(lab.start_cloud(
            &all,
            o.route_quota,
            o.tuning.attach_delay_ms,
            o.cloud_profile,
            o.tuning.instance_type.as_deref(),
        )?);
        lab.save_state(&st)?;
        eprintln!(
            "    cloud emulator running in {} on {} (pid {}, route-table quota {}, latency profile {})",
            lab.vpc_ns(),
            lab.cloud_endpoint(),
            st.cloud_pid.unwrap_or(0),
            o.route_quota,
            o.cloud_profile
        );
    }
    if o.store == StoreChoice::Etcd {
        st.etcd_pid = Some(lab.start_etcd()?);
        lab.save_state(&st)?;
        eprintln!(
            "    etcd running in {} (pid {})",
            lab.vpc_ns(),
            st.etcd_pid.unwrap_or(0)
        );
    }
    if o.store == StoreChoice::Kubernetes {
        st.kube_pid = Some(lab.start_kube_sim()?);
        lab.save_state(&st)?;
        lab.create_namespaces()?;
        eprintln!(
            "    API server (unicni kube-sim) running in {} on https://{} (pid {}; kubectl --kubeconfig {})",
            lab.vpc_ns(),
            lab.kube_server(),
            st.kube_pid.unwrap_or(0),
            lab.kubeconfig().display()
        );
    }
    for &i in &all {
        lab.create_node(i)?;
    }
    step(&format!(
        "installing unicni on {} nodes and starting their agents",
        all.len()
    ));
    for &i in &all {
        if st.store == StoreChoice::Kubernetes && i != OTHER {
            if let Some(cidr) = lab.register_node(i, &st)? {
                eprintln!("    node {i} registered, podCIDR {cidr}");
            }
        }
        lab.install_node(i, &st)?;
        let pid = lab.start_agent(i)?;
        if i == OTHER {
            st.other_nodes.push(node_state(lab, i, pid));
        } else {
            st.nodes.push(node_state(lab, i, pid));
        }
        lab.save_state(&st)?;
    }
    for node in st.nodes.iter_mut().chain(st.other_nodes.iter_mut()) {
        let ready = lab.wait_ready(
            node.index,
            node.agent_pid.unwrap_or(0),
            st.backend,
            Duration::from_secs(30),
        )?;
        let who = if node.index == OTHER {
            "second cluster's node".to_string()
        } else {
            format!("node {}", node.index)
        };
        match st.backend {
            Backend::Flannel => {
                eprintln!("    {who} ({}) leased {ready}", node.ip);
                node.subnet = ready;
            }
            Backend::Terway => eprintln!("    {who} ({}) {ready}", node.ip),
        }
    }
    lab.save_state(&st)?;
    if st.backend == Backend::Flannel {
        step("waiting for every agent to program its peers");
        lab.wait_converged(&st, Duration::from_secs(30))?;
    }
    let per = o.pods_per_node as usize;
    let total = n * per;
    step(&format!(
        "creating {total} pods{} through CNI ADD",
        if st.other_nodes.is_empty() {
            ""
        } else {
            " (+1 in the second cluster)"
        }
    ));
    for i in 1..=n {
        for j in 1..=per {
            let (ann, owner) = pod_meta(st.backend, i, j, n, per);
            let pod = lab.add_pod(st.backend, i, j, ann, owner)?;
            print_pod(&pod);
            st.pods.push(pod);
            lab.save_state(&st)?;
        }
    }
    if !st.other_nodes.is_empty() {
        let pod = lab.add_pod(st.backend, OTHER, 1, BTreeMap::new(), None)?;
        print_pod(&pod);
        st.other_pods.push(pod);
        lab.save_state(&st)?;
    }
    if st.ip_stack == IpStack::Dual {
        step("waiting for IPv6 duplicate address detection on the nodes' and pods' links");
        let all: Vec<String> = st
            .nodes
            .iter()
            .chain(&st.other_nodes)
            .map(|n| n.netns.clone())
            .chain(
                st.pods
                    .iter()
                    .chain(&st.other_pods)
                    .map(|p| p.netns.clone()),
            )
            .collect();
        lab.wait_ipv6_settled(&all, Duration::from_secs(10))?;
    }
    if st.policy {
        policy::enable(lab, &st)?;
    }
    if st.services {
        services::enable(lab, &mut st)?;
        lab.save_state(&st)?;
    }
    eprintln!("lab up in {:.1}s", started.elapsed().as_secs_f64());
    Ok(st)
}

fn print_pod(pod: &PodState) {
    let extra: Vec<String> = pod
        .annotations
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(pod.owner_kind.iter().map(|k| format!("owner {k}")))
        .collect();
    eprintln!(
        "    pod {} in {} got {}{}{}",
        pod.name,
        pod.netns,
        pod.ip,
        pod.ip6
            .as_deref()
            .map(|a| format!(", {a}"))
            .unwrap_or_default(),
        if extra.is_empty() {
            String::new()
        } else {
            format!(" ({})", extra.join(", "))
        }
    );
}

fn add_node(lab: &Lab) -> Result<ExitCode> {
    let mut st = lab.load_state()?;
    let i = st.nodes.iter().map(|n| n.index).max().unwrap_or(0) + 1;
    lab.create_node(i)?;
    if st.mode.needs_cloud() {
        lab.register_instance(i)?;
    }
    if st.store == StoreChoice::Kubernetes {
        lab.register_node(i, &st)?;
    }
    lab.install_node(i, &st)?;
    let pid = lab.start_agent(i)?;
    st.nodes.push(node_state(lab, i, pid));
    lab.save_state(&st)?;
    match lab.wait_ready(i, pid, st.backend, Duration::from_secs(15)) {
        Ok(ready) => {
            eprintln!("node {i} ({}) added: {ready}", lab.node_ip(i));
            if let (Some(n), Backend::Flannel) =
                (st.nodes.iter_mut().find(|n| n.index == i), st.backend)
            {
                n.subnet = ready;
            }
            lab.save_state(&st)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let readyz = lab
                .agent_get(i, "/readyz")
                .map(|r| nodes::http_body(&r))
                .unwrap_or_else(|e| format!("(agent endpoint unreachable: {e})"));
            eprintln!("node {i} added but not ready: {readyz}\n({e:#})");
            if let Some(q) = lab.agent_metric(i, "unicni_agent_vpc_route_quota_exceeded") {
                eprintln!("unicni_agent_vpc_route_quota_exceeded {q}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn agent_cmd(lab: &Lab, c: AgentCmd) -> Result<ExitCode> {
    let mut st = lab.load_state()?;
    let i = match &c {
        AgentCmd::Stop { node } | AgentCmd::Start { node } => *node,
    };
    let backend = st.backend;
    let ttl = st.lease_ttl_seconds;
    let Some(node) = st.nodes.iter_mut().find(|n| n.index == i) else {
        bail!("--node {i}: the lab has nodes 1..={}", st.nodes.len());
    };
    match c {
        AgentCmd::Stop { .. } => {
            if let Some(pid) = node.agent_pid.take() {
                Lab::stop_agent(pid);
                match backend {
                    Backend::Flannel if st.store == StoreChoice::Kubernetes => eprintln!(
                        "agent of node {i} (pid {pid}) stopped; its Node keeps spec.podCIDR"
                    ),
                    Backend::Flannel => eprintln!(
                        "agent of node {i} (pid {pid}) stopped; its lease expires in {ttl}s"
                    ),
                    Backend::Terway => eprintln!("agent of node {i} (pid {pid}) stopped"),
                }
            }
        }
        AgentCmd::Start { .. } => {
            if node.agent_pid.is_some_and(nodes::alive) {
                bail!(
                    "the agent of node {i} is already running (pid {})",
                    node.agent_pid.unwrap_or(0)
                );
            }
            let pid = lab.start_agent(i)?;
            node.agent_pid = Some(pid);
            let _ = std::fs::remove_file(lab.subnet_file(i));
            let ready = lab.wait_ready(i, pid, backend, Duration::from_secs(30))?;
            if backend == Backend::Flannel {
                node.subnet = ready.clone();
            }
            eprintln!("agent of node {i} started (pid {pid}): {ready}");
        }
    }
    lab.save_state(&st)?;
    Ok(ExitCode::SUCCESS)
}

/// CNI DEL for every pod (the plugin's own cleanup path), then everything else.
fn teardown(lab: &Lab) -> Result<()> {
    if let Ok(st) = lab.load_state() {
        for p in st.pods.iter().chain(&st.other_pods) {
            if let Err(e) = lab.del_pod(p) {
                eprintln!("    warning: {e:#}");
            }
        }
    }
    destroy(lab)
}

/// `lab compare`: a flannel (vxlan) and a terway (shared-eni) lab side by side, one table.
fn compare(id: Option<&str>, keep: bool, output: &str) -> Result<ExitCode> {
    let flannel = bench::sub_lab(id, "cmp", "f")?;
    let terway = bench::sub_lab(id, "cmp", "t")?;
    let id = id.unwrap_or("cmp");
    let started = Instant::now();
    let mut opts = default_up();
    let result = (|| -> Result<Vec<(Backend, Vec<checks::CheckResult>)>> {
        let mut out = Vec::new();
        for (lab, backend) in [(&flannel, Backend::Flannel), (&terway, Backend::Terway)] {
            opts.backend = backend;
            step(&format!(
                "{} lab ({}): 2 nodes × 2 pods",
                backend.as_str(),
                lab.prefix
            ));
            let mut st = up_or_clean(lab, &opts)?;
            step(&format!("checking the {} lab", backend.as_str()));
            let results = checks::run(lab, &mut st);
            lab.save_state(&st)?;
            out.push((backend, results));
        }
        Ok(out)
    })();
    if keep && result.is_ok() {
        eprintln!("labs left up: `unicni lab --id {id}f down`, `unicni lab --id {id}t down`");
    } else {
        step("tearing both labs down");
        for lab in [&flannel, &terway] {
            if let Err(e) = teardown(lab) {
                eprintln!("    warning: {e:#}");
            }
        }
    }
    let result = result?;
    let failed = checks::print_compare(&result, output);
    eprintln!("done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(exit(failed))
}

/// A bpffs of the lab's own at `<root>/bpf`, visible to agents and plugins run under
/// `ip netns exec` (which hides /sys/fs/bpf); a mount in the lab's (host) mount namespace
/// outlives agent restarts, as /sys/fs/bpf does on a real node. `destroy` unmounts it.
fn mount_bpffs(lab: &Lab) -> Result<()> {
    let dir = lab.bpf_root();
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    if !unicni_bpf::is_bpffs(&dir) {
        nix::mount::mount(
            Some("bpf"),
            &dir,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .with_context(|| format!("mount bpffs at {}", dir.display()))?;
    }
    Ok(())
}

/// The cgroup v2 hierarchy at `<root>/cgroup2` (`--services`), in the lab's (host) mount
/// namespace so that agents under `ip netns exec` see its root: the Service load balancer
/// attaches there, i.e. to the machine's root cgroup, which every pod process is under.
/// `destroy` unmounts it (the programs stay attached through their pinned links until the
/// lab's bpffs goes).
fn mount_cgroup2(lab: &Lab) -> Result<()> {
    let dir = lab.cgroup2_root();
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    nix::mount::mount(
        Some("cgroup2"),
        &dir,
        Some("cgroup2"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mount the cgroup v2 hierarchy at {}", dir.display()))
}

/// Removes every process, namespace and file of this lab. Safe to repeat; works from
/// nothing but the names when the state file is gone.
pub fn destroy(lab: &Lab) -> Result<()> {
    let mut pids: Vec<u32> = Vec::new();
    if let Ok(st) = lab.load_state() {
        pids.extend(st.nodes.iter().filter_map(|n| n.agent_pid));
        pids.extend(st.etcd_pid);
        pids.extend(st.kube_pid);
        pids.extend(st.cloud_pid);
        pids.extend(st.service_pids.iter().copied());
        pids.extend(st.other_nodes.iter().filter_map(|n| n.agent_pid));
    }
    let root = format!("{}/", lab.root.display());
    pids.extend(nodes::processes_mentioning(&root));
    pids.sort();
    pids.dedup();
    for pid in pids {
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            // Only processes of this lab: the PID may have been reused since.
            if String::from_utf8_lossy(&cmd).contains(&root) {
                nodes::terminate(pid, Duration::from_secs(5));
            }
        }
    }
    let ns_prefix = format!("{}-", lab.prefix);
    if let Ok(out) = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
    {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with(&ns_prefix) {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", name])
                    .status();
            }
        }
    }
    // The lab's cgroup v2 mount (--services).
    if lab.cgroup2_root().exists() {
        let _ = nix::mount::umount2(&lab.cgroup2_root(), nix::mount::MntFlags::MNT_DETACH);
    }
    // The lab's bpffs (--datapath ebpf, --policy): its pins go with it.
    if unicni_bpf::is_bpffs(&lab.bpf_root()) {
        let _ = nix::mount::umount2(&lab.bpf_root(), nix::mount::MntFlags::MNT_DETACH);
    }
    if lab.root.exists() {
        std::fs::remove_dir_all(&lab.root)
            .with_context(|| format!("remove {}", lab.root.display()))?;
    }
    Ok(())
}

//! `unicni lab`: a whole flannel cluster on this machine, built through the real code
//! paths: a simulated VPC (a namespace with a bridge), node namespaces each running the
//! real `unicni install` and `unicni agent`, pods attached by executing the installed
//! plugin inside their node's namespace, and a connectivity matrix with real packets.
//! Everything carries the `ulab` prefix so `unicni lab down` can remove it after a crash.

mod bench;
mod checks;
mod cloud;
mod etcd;
mod nodes;
mod pods;
mod scale;
mod topology;
mod underlay;

use anyhow::{bail, Context, Result};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use topology::{Lab, LabState, Mode, NodeState, StoreChoice};

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
    /// The backend to run (flannel only in this build).
    #[arg(long, default_value = "flannel", value_parser = ["flannel"])]
    backend: String,
    /// Datapath between nodes: vxlan overlay, or host-gw routes over the shared L2 segment.
    #[arg(long, value_enum, default_value_t = Mode::Vxlan)]
    mode: Mode,
    /// Node namespaces, each running its own agent.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=200))]
    nodes: u16,
    /// Pods per node, created through CNI ADD.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=100))]
    pods_per_node: u16,
    /// Where leases live: a shared file store, or a real etcd server in the VPC namespace.
    #[arg(long, value_enum, default_value_t = StoreChoice::File)]
    store: StoreChoice,
    /// Subnet lease time-to-live in seconds (etcd needs 10 or more).
    #[arg(long, default_value_t = 10)]
    lease_ttl: u64,
    /// vpc-route: custom entries the emulated VPC route table accepts (the vendor's
    /// default is 200); nodes beyond it stay not ready with the quota error.
    #[arg(long, default_value_t = 200)]
    route_quota: u32,
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
    Up(UpOpts),
    /// Run the connectivity matrix on the running lab.
    Check {
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Remove everything a lab created (processes, namespaces, files), also after a crash.
    Down,
    /// Add one node to the running lab (namespace, install, agent); it gets no pods. Fails
    /// with the agent's not-ready reason when it cannot become ready (e.g. the vpc-route
    /// route-table quota), leaving the node in place to look at.
    AddNode,
    /// Stop or start one node's agent (to see restarts and lease expiry).
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Measure cross-node pod-to-pod throughput and latency, vxlan and host-gw, against
    /// the two nodes' own underlay (the limit).
    Bench {
        /// Seconds of iperf3 per measurement.
        #[arg(long, default_value_t = 3)]
        seconds: u32,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
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

fn default_up() -> UpOpts {
    UpOpts {
        backend: "flannel".into(),
        mode: Mode::Vxlan,
        nodes: 2,
        pods_per_node: 2,
        store: StoreChoice::File,
        lease_ttl: 10,
        route_quota: 200,
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
            let st = up_or_clean(&lab, &opts)?;
            step("checking connectivity");
            let results = checks::run(&lab, &st);
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
        Command::Up(opts) => {
            up_or_clean(&lab, &opts)?;
            eprintln!("lab is up: `unicni lab check`, `unicni lab down`");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { output } => {
            let st = lab.load_state()?;
            let results = checks::run(&lab, &st);
            Ok(exit(checks::print(&results, &output)))
        }
        Command::Down => {
            teardown(&lab)?;
            eprintln!("lab removed");
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(c) => agent_cmd(&lab, c),
        Command::AddNode => add_node(&lab),
        Command::Bench { seconds, output } => bench::run(&lab, seconds, &output),
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

fn up(lab: &Lab, o: &UpOpts) -> Result<LabState> {
    let started = Instant::now();
    let n = o.nodes as usize;
    std::fs::create_dir_all(&lab.root).with_context(|| format!("create {}", lab.root.display()))?;
    step(&format!(
        "building the VPC and {n} node namespaces ({} / {}, {} store)",
        o.backend,
        o.mode.as_str(),
        match o.store {
            StoreChoice::File => "file",
            StoreChoice::Etcd => "etcd",
        }
    ));
    lab.create_vpc()?;
    lab.create_host()?;
    let mut st = LabState {
        mode: o.mode,
        store: o.store,
        lease_ttl_seconds: o.lease_ttl,
        nodes: Vec::new(),
        pods: Vec::new(),
        etcd_pid: None,
        cloud_pid: None,
    };
    if o.mode == Mode::VpcRoute {
        st.cloud_pid = Some(lab.start_cloud(n, o.route_quota)?);
        lab.save_state(&st)?;
        eprintln!(
            "    cloud emulator running in {} on {} (pid {}, route-table quota {})",
            lab.vpc_ns(),
            lab.cloud_endpoint(),
            st.cloud_pid.unwrap_or(0),
            o.route_quota
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
    for i in 1..=n {
        lab.create_node(i)?;
    }
    step(&format!(
        "installing unicni on {n} nodes and starting their agents"
    ));
    for i in 1..=n {
        lab.install_node(i, o.mode, o.store, o.lease_ttl)?;
        let pid = lab.start_agent(i)?;
        st.nodes.push(NodeState {
            index: i,
            name: lab.node_name(i),
            netns: lab.node_ns(i),
            ip: lab.node_ip(i),
            subnet: String::new(),
            agent_pid: Some(pid),
        });
        lab.save_state(&st)?;
    }
    for node in st.nodes.iter_mut() {
        node.subnet = lab.wait_ready(
            node.index,
            node.agent_pid.unwrap_or(0),
            Duration::from_secs(30),
        )?;
        eprintln!(
            "    node {} ({}) leased {}",
            node.index, node.ip, node.subnet
        );
    }
    lab.save_state(&st)?;
    step("waiting for every agent to program its peers");
    lab.wait_converged(&st, Duration::from_secs(30))?;
    let total = n * o.pods_per_node as usize;
    step(&format!("creating {total} pods through CNI ADD"));
    for i in 1..=n {
        for j in 1..=o.pods_per_node as usize {
            let pod = lab.add_pod(i, j)?;
            eprintln!("    pod {} in {} got {}", pod.name, pod.netns, pod.ip);
            st.pods.push(pod);
            lab.save_state(&st)?;
        }
    }
    eprintln!("lab up in {:.1}s", started.elapsed().as_secs_f64());
    Ok(st)
}

fn add_node(lab: &Lab) -> Result<ExitCode> {
    let mut st = lab.load_state()?;
    let i = st.nodes.iter().map(|n| n.index).max().unwrap_or(0) + 1;
    lab.create_node(i)?;
    if st.mode == Mode::VpcRoute {
        lab.register_instance(i)?;
    }
    lab.install_node(i, st.mode, st.store, st.lease_ttl_seconds)?;
    let pid = lab.start_agent(i)?;
    st.nodes.push(NodeState {
        index: i,
        name: lab.node_name(i),
        netns: lab.node_ns(i),
        ip: lab.node_ip(i),
        subnet: String::new(),
        agent_pid: Some(pid),
    });
    lab.save_state(&st)?;
    match lab.wait_ready(i, pid, Duration::from_secs(15)) {
        Ok(subnet) => {
            eprintln!("node {i} ({}) added, subnet {subnet}", lab.node_ip(i));
            if let Some(n) = st.nodes.iter_mut().find(|n| n.index == i) {
                n.subnet = subnet;
            }
            lab.save_state(&st)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let readyz = lab
                .agent_get(i, "/readyz")
                .map(|r| r.split("\r\n\r\n").nth(1).unwrap_or("").trim().to_string())
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
    let Some(node) = st.nodes.iter_mut().find(|n| n.index == i) else {
        bail!("--node {i}: the lab has nodes 1..={}", st.nodes.len());
    };
    match c {
        AgentCmd::Stop { .. } => {
            if let Some(pid) = node.agent_pid.take() {
                Lab::stop_agent(pid);
                eprintln!(
                    "agent of node {i} (pid {pid}) stopped; its lease expires in {}s",
                    st.lease_ttl_seconds
                );
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
            node.subnet = lab.wait_ready(i, pid, Duration::from_secs(30))?;
            eprintln!(
                "agent of node {i} started (pid {pid}), subnet {}",
                node.subnet
            );
        }
    }
    lab.save_state(&st)?;
    Ok(ExitCode::SUCCESS)
}

/// CNI DEL for every pod (the plugin's own cleanup path), then everything else.
fn teardown(lab: &Lab) -> Result<()> {
    if let Ok(st) = lab.load_state() {
        for p in &st.pods {
            if let Err(e) = lab.del_pod(p) {
                eprintln!("    warning: {e:#}");
            }
        }
    }
    destroy(lab)
}

/// Removes every process, namespace and file of this lab. Safe to repeat; works from
/// nothing but the names when the state file is gone.
pub fn destroy(lab: &Lab) -> Result<()> {
    let mut pids: Vec<u32> = Vec::new();
    if let Ok(st) = lab.load_state() {
        pids.extend(st.nodes.iter().filter_map(|n| n.agent_pid));
        pids.extend(st.etcd_pid);
        pids.extend(st.cloud_pid);
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
    if lab.root.exists() {
        std::fs::remove_dir_all(&lab.root)
            .with_context(|| format!("remove {}", lab.root.display()))?;
    }
    Ok(())
}

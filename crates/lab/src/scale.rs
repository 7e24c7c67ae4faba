//! `unicni lab scale`: the agent against a synthetic cluster. N peer leases are written
//! into a file store, then a real `unicni agent` starts inside a fresh node namespace;
//! reported: time until every peer is programmed (from an empty namespace), and the
//! agent's peak resident memory.

use super::nodes::{alive, spawn_agent, terminate};
use super::topology::{in_ns, sh, Lab, Mode, AGENT_LISTEN, NETWORK};
use anyhow::{bail, Result};
use serde::Serialize;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};
use unicni_flannel::lease::{key, Lease};

#[derive(Serialize)]
struct Report {
    mode: &'static str,
    peers: usize,
    converge_seconds: f64,
    peak_rss_mib: f64,
    routes_in_kernel: usize,
    /// Duration of the agent's last reconcile pass (steady state: nothing to write).
    steady_pass_ms: u64,
}

/// Peer `i` (1-based): subnet 10.(128+i/256).(i%256).0/24, underlay 172.20.(i/250).(i%250+2).
fn peer_lease(i: usize, mode: Mode) -> Lease {
    let mac = format!(
        "02:5c:{:02x}:{:02x}:{:02x}:01",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    );
    Lease {
        subnet: format!("10.{}.{}.0/24", 128 + i / 256, i % 256),
        node: format!("synthetic-{i}"),
        public_ip: Some(format!("172.20.{}.{}", i / 250, i % 250 + 2)),
        vtep_mac: (mode == Mode::Vxlan).then_some(mac),
        mode: Some(mode.as_str().into()),
        expires_at: Some(unicni_flannel::lease_store::now() + 3600),
        ..Lease::default()
    }
}

fn rss_peak_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn run(lab: &Lab, peers: usize, mode: Mode, output: &str) -> Result<ExitCode> {
    if !(1..=32000).contains(&peers) {
        bail!("--peers {peers}: 1 to 32000");
    }
    if !matches!(mode, Mode::Vxlan | Mode::HostGw) {
        bail!(
            "--mode {}: lab scale measures the flannel agent's peers (vxlan or host-gw)",
            mode.as_str()
        );
    }
    super::destroy(lab)?;
    let r = scale(lab, peers, mode);
    super::destroy(lab)?;
    let r = r?;
    if output == "json" {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} peers ({}): converged in {:.2}s from empty, agent peak RSS {:.1} MiB, {} routes in the kernel, steady-state pass {} ms",
            r.peers, r.mode, r.converge_seconds, r.peak_rss_mib, r.routes_in_kernel, r.steady_pass_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn scale(lab: &Lab, peers: usize, mode: Mode) -> Result<Report> {
    let ns = format!("{}-scale", lab.prefix);
    let dir = lab.root.join("scale");
    let store = dir.join("store");
    std::fs::create_dir_all(store.join("flannel/subnets"))?;
    eprintln!(
        "==> writing {peers} synthetic peer leases into {}",
        store.display()
    );
    for i in 1..=peers {
        let l = peer_lease(i, mode);
        let k = key(&l.subnet.parse().expect("valid subnet"));
        std::fs::write(store.join(&k), serde_json::to_vec(&l)?)?;
    }
    eprintln!("==> node namespace {ns} with an underlay on 172.20.0.0/16");
    sh(&["ip", "netns", "add", &ns])?;
    in_ns(&ns, &["ip", "link", "set", "lo", "up"])?;
    in_ns(
        &ns,
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ],
    )?;
    in_ns(
        &ns,
        &["ip", "addr", "add", "172.20.255.1/16", "dev", "eth0"],
    )?;
    in_ns(&ns, &["ip", "link", "set", "eth0", "up"])?;
    in_ns(&ns, &["ip", "link", "set", "eth1", "up"])?;
    let config = dir.join("unicni.toml");
    std::fs::write(
        &config,
        format!(
            "[cluster]\nname = \"scale\"\n\n[flannel]\nnetwork = \"10.128.0.0/9\"\nsubnet_len = 24\nmode = \"{}\"\n\
             interface = \"eth0\"\n\n[cni]\nnetwork_name = \"{NETWORK}\"\n\n[store]\nkind = \"file\"\npath = \"{}\"\n\
             lease_ttl_seconds = 3600\n\n[node]\nname = \"scale-node\"\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\n\n\
             [agent]\nlisten = \"{AGENT_LISTEN}\"\nreconcile_seconds = 2\n",
            mode.as_str(),
            store.display(),
            d = dir.display()
        ),
    )?;
    eprintln!("==> starting the agent and waiting for {peers} peers");
    let log = std::fs::File::create(dir.join("agent.log"))?;
    let started = Instant::now();
    let child = spawn_agent(&ns, &lab.exe, &config, log)?;
    let pid = child.id();
    let want_routes = peers;
    let count_routes = || -> usize {
        Command::new("ip")
            .args(["netns", "exec", &ns, "ip", "route", "show", "proto", "77"])
            .output()
            .map(|o| o.stdout.iter().filter(|&&b| b == b'\n').count())
            .unwrap_or(0)
    };
    let mut converged = None;
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until && alive(pid) {
        // The agent reports all peers programmed only after a whole pass succeeded.
        let metrics = agent_metrics(&ns);
        if metrics
            .lines()
            .any(|l| l == format!("unicni_agent_peers {peers}"))
        {
            converged = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let one more pass run with everything in place, to time the steady state.
    std::thread::sleep(Duration::from_millis(2500));
    let steady_pass_ms = agent_metrics(&ns)
        .lines()
        .find(|l| l.starts_with("unicni_agent_last_reconcile_milliseconds "))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    let rss = rss_peak_kib(pid).unwrap_or(0);
    if std::env::var_os("UNICNI_SCALE_LOG").is_some() {
        eprintln!(
            "{}",
            std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
        );
    }
    let routes = count_routes();
    terminate(pid, Duration::from_secs(5));
    let Some(t) = converged else {
        let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        bail!(
            "the agent did not program {peers} peers within 120s ({routes} routes in the kernel); last log lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    };
    if routes != want_routes {
        bail!("{routes} agent routes in the kernel, expected {want_routes}");
    }
    Ok(Report {
        mode: mode.as_str(),
        peers,
        converge_seconds: t.as_secs_f64(),
        peak_rss_mib: rss as f64 / 1024.0,
        routes_in_kernel: routes,
        steady_pass_ms,
    })
}

/// The agent's metrics page in namespace `ns`; empty when it does not answer (yet).
fn agent_metrics(ns: &str) -> String {
    Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sf"])
        .arg(format!("http://{AGENT_LISTEN}/metrics"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

//! Side-by-side benchmark of pod network setup: unicni against the reference `bridge` +
//! `host-local` plugins (Debian's containernetworking-plugins), executed the same way a
//! runtime executes them (fork/exec, env, config on stdin), alternating in one run.
//!
//! Both sides do the same work. The reference gets the delegate configuration flannel's
//! own CNI plugin (flannel-io/cni-plugin) builds for `bridge` from `subnet.env` with the
//! stock kube-flannel conflist: `isGateway` and `isDefaultGateway` on, `hairpinMode` on,
//! `ipMasq` off (flanneld masquerades once per node), the MTU and a host-local range of
//! the node's subnet with a route to the cluster network. unicni runs with `ipMasq` off
//! too and puts the same two routes (default and cluster network, both via the gateway)
//! in the pod.
//!
//! The kernel's own floor is measured in the same run, in this process over netlink
//! (no fork/exec): one veth pair created with its peer inside a fresh netns, and one
//! deletion of such a pair.
//!
//! Usage: cni-bench [--cycles N] [--concurrent C] [--rounds R] [--unicni PATH] [--reference-dir DIR]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use unicni_net::{NetNs, Netlink, VethSpec};
use unicni_testkit::{unique_ifname, CniRun, Netns};

struct Plugin {
    label: &'static str,
    exe: PathBuf,
    cni_path: String,
    conf: Value,
    bridge: &'static str,
}

fn invocation(p: &Plugin, cmd: &str, id: &str, ns: &Netns) -> CniRun {
    CniRun::new(&p.exe, cmd)
        .container_id(id)
        .netns(&ns.path)
        .cni_path(&p.cni_path)
        .config(&p.conf)
}

fn run(p: &Plugin, cmd: &str, id: &str, ns: &Netns) -> Duration {
    let inv = invocation(p, cmd, id, ns);
    let t = Instant::now();
    let out = inv.run();
    let d = t.elapsed();
    assert!(
        out.ok,
        "{} {cmd} failed: {} {}",
        p.label, out.stdout, out.stderr
    );
    d
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    let ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let n = ms.len();
    if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Cluster network, node subnet and MTU as flanneld's `subnet.env` would give them.
struct SubnetEnv {
    network: &'static str,
    subnet: &'static str,
    mtu: u32,
}

/// The `bridge` delegate flannel's CNI plugin builds from `subnet.env` when the conflist's
/// `delegate` is kube-flannel's `{"hairpinMode": true, "isDefaultGateway": true}`:
/// `isGateway` defaults to true, `ipMasq` to the opposite of FLANNEL_IPMASQ (flanneld
/// masquerades, so false), `mtu` to FLANNEL_MTU; IPAM is host-local with one range (the
/// node subnet) and a route to the cluster network.
fn flannel_delegate(name: &str, bridge: &str, env: &SubnetEnv, data_dir: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0", "name": name, "type": "bridge", "bridge": bridge,
        "hairpinMode": true, "isDefaultGateway": true, "isGateway": true, "ipMasq": false,
        "mtu": env.mtu,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": env.subnet}]],
                 "routes": [{"dst": env.network}], "dataDir": data_dir}
    })
}

/// How much of the plugin's hot-function list (layout/plugin-hot-symbols.txt, grouped by
/// the release link) the measured binary has: a stale list shows here as a slower ADD's
/// likely cause.
fn layout_check(here: &Path, unicni: &Path) -> String {
    let list = here.join("../../layout/plugin-hot-symbols.txt");
    let Ok(text) = std::fs::read_to_string(&list) else {
        return format!("{} missing", list.display());
    };
    let listed: std::collections::BTreeSet<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let Ok(out) = Command::new("nm").arg(unicni).output() else {
        return "nm not available".into();
    };
    let symbols = String::from_utf8_lossy(&out.stdout);
    let present = symbols
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|s| listed.contains(s))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    format!(
        "{present} of {} listed hot functions in the binary (scripts/plugin-layout.sh refreshes the list)",
        listed.len()
    )
}

/// The kernel's floor, over netlink from this process: no exec, no config, no IPAM.
struct Floor {
    rt: tokio::runtime::Runtime,
    host: Netlink,
}

impl Floor {
    fn new() -> Floor {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let host = rt.block_on(async { Netlink::current() }).unwrap();
        Floor { rt, host }
    }

    /// Creates a veth pair whose peer `eth0` lands in `ns`; returns the host side's name.
    fn add(&self, ns: &Netns) -> (String, Duration) {
        veth_into(&self.rt, &self.host, ns)
    }

    fn del(&self, host_name: &str) -> Duration {
        let t = Instant::now();
        let gone = self.rt.block_on(self.host.delete_link(host_name)).unwrap();
        let d = t.elapsed();
        assert!(gone, "floor veth {host_name} was not there to delete");
        d
    }
}

fn veth_into(rt: &tokio::runtime::Runtime, host: &Netlink, ns: &Netns) -> (String, Duration) {
    let name = unique_ifname("ubf");
    let netns = NetNs::open(Path::new(&ns.path)).unwrap();
    let spec = VethSpec {
        host_name: &name,
        peer_name: "eth0",
        peer_netns: &netns,
        master: None,
        mtu: 1450,
        host_mac: None,
        peer_mac: None,
    };
    let t = Instant::now();
    rt.block_on(host.create_veth(&spec))
        .unwrap_or_else(|e| panic!("floor: create veth {name}: {e}"));
    (name, t.elapsed())
}

/// `n` veth pairs created at once, one thread (runtime and netlink socket) each, like
/// `n` plugin processes; returns the wall time and the host-side names.
fn floor_concurrent(namespaces: &[Netns]) -> (Duration, Vec<String>) {
    let barrier = std::sync::Barrier::new(namespaces.len() + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = namespaces
            .iter()
            .map(|ns| {
                let barrier = &barrier;
                s.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    let host = rt.block_on(async { Netlink::current() }).unwrap();
                    barrier.wait();
                    veth_into(&rt, &host, ns).0
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        let names: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (t.elapsed(), names)
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cycles: usize = arg(&args, "--cycles")
        .map(|v| v.parse().unwrap())
        .unwrap_or(50);
    let concurrent: usize = arg(&args, "--concurrent")
        .map(|v| v.parse().unwrap())
        .unwrap_or(20);
    let rounds: usize = arg(&args, "--rounds")
        .map(|v| v.parse().unwrap())
        .unwrap_or(5);
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unicni = arg(&args, "--unicni")
        .map(PathBuf::from)
        .unwrap_or_else(|| here.join("../../target/release/unicni"));
    let refdir =
        PathBuf::from(arg(&args, "--reference-dir").unwrap_or_else(|| "/usr/lib/cni".into()));
    assert!(
        unicni.exists(),
        "{} missing: cargo build --release first",
        unicni.display()
    );
    assert!(
        refdir.join("bridge").exists(),
        "reference plugins missing in {}",
        refdir.display()
    );

    let state = tempfile::tempdir().unwrap();
    let ref_env = SubnetEnv {
        network: "10.251.0.0/16",
        subnet: "10.251.1.0/24",
        mtu: 1450,
    };
    let uni_env = SubnetEnv {
        network: "10.252.0.0/16",
        subnet: "10.252.1.0/24",
        mtu: 1450,
    };
    let plugins = [
        Plugin {
            label: "reference bridge+host-local",
            exe: refdir.join("bridge"),
            cni_path: refdir.display().to_string(),
            bridge: "ubenchref0",
            conf: flannel_delegate(
                "unicni-bench-ref",
                "ubenchref0",
                &ref_env,
                &state.path().join("host-local"),
            ),
        },
        Plugin {
            label: "unicni (flannel)",
            exe: unicni.clone(),
            cni_path: refdir.display().to_string(),
            bridge: "ubenchuni0",
            // ipMasq off: masquerading is the agent's job (once per node), as it is
            // flanneld's for the reference.
            conf: json!({
                "cniVersion": "1.0.0", "name": "unicni-bench", "type": "unicni", "backend": "flannel",
                "clusterNetwork": uni_env.network, "subnet": uni_env.subnet, "bridge": "ubenchuni0",
                "mtu": uni_env.mtu, "ipMasq": false, "hairpin": true,
                "stateDir": state.path().join("unicni"), "runDir": state.path().join("run")
            }),
        },
    ];
    let floor = Floor::new();
    let layout = layout_check(here, &unicni);

    // Warm-up: the first ADD builds the bridge for both; not measured.
    for p in &plugins {
        let ns = Netns::with_prefix("ubw");
        run(p, "ADD", "warm", &ns);
        run(p, "DEL", "warm", &ns);
    }
    {
        let ns = Netns::with_prefix("ubw");
        let (name, _) = floor.add(&ns);
        floor.del(&name);
    }

    let mut add = [Vec::new(), Vec::new(), Vec::new()];
    let mut del = [Vec::new(), Vec::new(), Vec::new()];
    for i in 0..cycles {
        for (k, p) in plugins.iter().enumerate() {
            let ns = Netns::with_prefix("ubs");
            add[k].push(run(p, "ADD", &format!("seq{i}"), &ns));
            del[k].push(run(p, "DEL", &format!("seq{i}"), &ns));
        }
        let ns = Netns::with_prefix("ubs");
        let (name, d) = floor.add(&ns);
        add[2].push(d);
        del[2].push(floor.del(&name));
        if (i + 1) % 10 == 0 {
            eprintln!("sequential: {}/{cycles} cycles", i + 1);
        }
    }

    let mut wall = [Vec::new(), Vec::new(), Vec::new()];
    for r in 0..rounds {
        for (k, p) in plugins.iter().enumerate() {
            let namespaces: Vec<Netns> =
                (0..concurrent).map(|_| Netns::with_prefix("ubc")).collect();
            let runs: Vec<CniRun> = namespaces
                .iter()
                .enumerate()
                .map(|(c, ns)| invocation(p, "ADD", &format!("con{r}-{c}"), ns))
                .collect();
            let t = Instant::now();
            let children: Vec<_> = runs.iter().map(CniRun::spawn).collect();
            for c in children {
                let out = c.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "{}: {}",
                    p.label,
                    String::from_utf8_lossy(&out.stdout)
                );
            }
            wall[k].push(t.elapsed());
            for (c, ns) in namespaces.iter().enumerate() {
                run(p, "DEL", &format!("con{r}-{c}"), ns);
            }
        }
        let namespaces: Vec<Netns> = (0..concurrent).map(|_| Netns::with_prefix("ubc")).collect();
        let (d, names) = floor_concurrent(&namespaces);
        wall[2].push(d);
        for name in names {
            floor.del(&name);
        }
        eprintln!("concurrent: {}/{rounds} rounds", r + 1);
    }

    for p in &plugins {
        let _ = Command::new("ip").args(["link", "del", p.bridge]).status();
    }
    // Left by unicni versions that still masqueraded from the plugin.
    let _ = Command::new("nft")
        .args(["delete", "table", "ip", "unicni_unicni_bench"])
        .stderr(Stdio::null())
        .status();

    println!();
    println!("CNI benchmark: {cycles} sequential ADD+DEL cycles, {concurrent} concurrent ADDs x {rounds} rounds");
    println!("reference configured as flannel's CNI plugin delegates to it; both without per-pod masquerade");
    println!(
        "{:<28} {:>10} {:>10} {:>8} {:>14}",
        "median (ms)", "reference", "unicni", "ratio", "kernel floor"
    );
    let mut med = Vec::new();
    for (name, series) in [("ADD", &add), ("DEL", &del), ("concurrent ADD wall", &wall)] {
        let r = median(series[0].clone());
        let u = median(series[1].clone());
        let f = median(series[2].clone());
        println!("{name:<28} {r:>10.2} {u:>10.2} {:>7.2}x {f:>14.2}", u / r);
        med.push((r, u, f));
    }
    println!("code layout: {layout}");
    println!(
        "kernel floor: one veth pair into a netns / one veth deletion / {concurrent} pairs at once, \
         over netlink from the benchmark process (no fork/exec)"
    );
    for (name, (r, u, f)) in ["ADD", "DEL"].iter().zip(&med) {
        println!(
            "{name} above the floor (ms): reference {:.2}, unicni {:.2} ({:.2}x)",
            r - f,
            u - f,
            (u - f) / (r - f)
        );
    }
}

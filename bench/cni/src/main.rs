//! Side-by-side benchmark of pod network setup: unicni against the reference `bridge` +
//! `host-local` plugins (Debian's containernetworking-plugins), executed the same way a
//! runtime executes them (fork/exec, env, config on stdin), alternating in one run.
//!
//! Usage: cni-bench [--cycles N] [--concurrent C] [--rounds R] [--unicni PATH] [--reference-dir DIR]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use unicni_testkit::{CniRun, Netns};

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
    let plugins = [
        Plugin {
            label: "reference bridge+host-local",
            exe: refdir.join("bridge"),
            cni_path: refdir.display().to_string(),
            bridge: "ubenchref0",
            conf: json!({
                "cniVersion": "1.0.0", "name": "unicni-bench-ref", "type": "bridge",
                "bridge": "ubenchref0", "isGateway": true, "ipMasq": true, "hairpinMode": true, "mtu": 1450,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.251.0.0/24"}]],
                         "routes": [{"dst": "0.0.0.0/0"}], "dataDir": state.path().join("host-local")}
            }),
        },
        Plugin {
            label: "unicni (flannel)",
            exe: unicni.clone(),
            cni_path: refdir.display().to_string(),
            bridge: "ubenchuni0",
            conf: json!({
                "cniVersion": "1.0.0", "name": "unicni-bench", "type": "unicni", "backend": "flannel",
                "clusterNetwork": "10.252.0.0/16", "subnet": "10.252.1.0/24", "bridge": "ubenchuni0",
                "mtu": 1450, "ipMasq": true, "stateDir": state.path().join("unicni"),
                "runDir": state.path().join("run")
            }),
        },
    ];

    // Warm-up: the first ADD builds the bridge and rules for both; not measured.
    for p in &plugins {
        let ns = Netns::with_prefix("ubw");
        run(p, "ADD", "warm", &ns);
        run(p, "DEL", "warm", &ns);
    }

    let mut add = [Vec::new(), Vec::new()];
    let mut del = [Vec::new(), Vec::new()];
    for i in 0..cycles {
        for (k, p) in plugins.iter().enumerate() {
            let ns = Netns::with_prefix("ubs");
            add[k].push(run(p, "ADD", &format!("seq{i}"), &ns));
            del[k].push(run(p, "DEL", &format!("seq{i}"), &ns));
        }
        if (i + 1) % 10 == 0 {
            eprintln!("sequential: {}/{cycles} cycles", i + 1);
        }
    }

    let mut wall = [Vec::new(), Vec::new()];
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
        eprintln!("concurrent: {}/{rounds} rounds", r + 1);
    }

    for p in &plugins {
        let _ = Command::new("ip").args(["link", "del", p.bridge]).status();
    }
    let _ = Command::new("nft")
        .args(["delete", "table", "ip", "unicni_unicni_bench"])
        .stderr(Stdio::null())
        .status();

    println!();
    println!("CNI benchmark: {cycles} sequential ADD+DEL cycles, {concurrent} concurrent ADDs x {rounds} rounds");
    println!(
        "{:<28} {:>12} {:>12} {:>8}",
        "median (ms)", "reference", "unicni", "ratio"
    );
    for (name, series) in [("ADD", &add), ("DEL", &del), ("concurrent ADD wall", &wall)] {
        let r = median(series[0].clone());
        let u = median(series[1].clone());
        println!("{name:<28} {r:>12.2} {u:>12.2} {:>7.2}x", u / r);
    }
}

//! Pod sandbox start and stop through containerd's CRI, with unicni and with the
//! reference bridge + host-local in the same run, alternating, so both see the same
//! machine load. Prints medians and the unicni / bridge ratio.
//!
//! `sudo cargo bench --bench cri` (root: it runs two private containerds).
//! `UNICNI_BENCH_ROUNDS` (default 30) sets the measured rounds per plugin.

#[path = "../../tests/runtimes/mod.rs"]
mod runtimes;

use runtimes::containerd::Containerd;
use runtimes::cri::{Cri, PodSpec};
use runtimes::guard::Defer;
use runtimes::image::write_images;
use runtimes::network::{install, Network, Plugin};
use std::path::Path;
use std::time::{Duration, Instant};

const WARMUP: usize = 3;

struct Setup {
    plugin: Plugin,
    net: Network,
    // Field order is drop order: the client before its containerd.
    cri: Cri,
    _ctrd: Containerd,
    cgroup_parent: String,
    logs: std::path::PathBuf,
    start: Vec<Duration>,
    stop: Vec<Duration>,
}

fn setup(plugin: Plugin, dir: &Path, oci: &Path, defer: &mut Defer) -> Setup {
    let net = install(plugin, &dir.join("cni"), &["portmap"], defer);
    let ctrd = Containerd::start(&dir.join("containerd"), &net, oci);
    let cri = ctrd.cri();
    let cgroup_parent = format!("/unicni-bench-{}", net.name);
    defer.cgroup(&cgroup_parent);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    Setup {
        plugin,
        net,
        cri,
        _ctrd: ctrd,
        cgroup_parent,
        logs,
        start: Vec::new(),
        stop: Vec::new(),
    }
}

/// One pod: RunPodSandbox timed, then StopPodSandbox + RemovePodSandbox timed.
fn cycle(s: &mut Setup, round: usize, record: bool) {
    let spec = PodSpec {
        name: format!("{}-{round}", s.net.name),
        cgroup_parent: s.cgroup_parent.clone(),
        ..Default::default()
    };
    let t0 = Instant::now();
    let pod = s
        .cri
        .run_pod(&spec, &s.logs)
        .unwrap_or_else(|e| panic!("{}: RunPodSandbox: {e}", s.plugin.label()));
    let started = t0.elapsed();
    let ip = s.cri.pod_ip(&pod);
    assert!(!ip.is_empty(), "{}: pod has no IP", s.plugin.label());
    let t1 = Instant::now();
    s.cri
        .stop_pod(&pod.id)
        .unwrap_or_else(|e| panic!("{}: StopPodSandbox: {e}", s.plugin.label()));
    s.cri
        .remove_pod(&pod.id)
        .unwrap_or_else(|e| panic!("{}: RemovePodSandbox: {e}", s.plugin.label()));
    let stopped = t1.elapsed();
    if record {
        s.start.push(started);
        s.stop.push(stopped);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn main() {
    if !runtimes::env::preflight(
        "bench cri",
        runtimes::env::Needs {
            tools: &["containerd", "ctr", "runc", "ip"],
            files: &[
                "/usr/lib/cni/bridge",
                "/usr/lib/cni/host-local",
                "/usr/lib/cni/portmap",
                runtimes::image::BUSYBOX,
            ],
        },
    ) {
        return;
    }
    let rounds: usize = std::env::var("UNICNI_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut defer = Defer::new();
    let tmp = tempfile::Builder::new()
        .prefix("unicni-bench-")
        .tempdir_in("/tmp")
        .unwrap()
        .keep();
    defer.remove_path(&tmp);
    let (_, oci) = write_images(&tmp);
    let mut setups = vec![
        setup(Plugin::Unicni, &tmp.join("unicni"), &oci, &mut defer),
        setup(Plugin::Reference, &tmp.join("bridge"), &oci, &mut defer),
    ];
    for round in 0..WARMUP + rounds {
        // Alternate who goes first, so neither always runs on a warmer cache.
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            cycle(&mut setups[i], round, round >= WARMUP);
        }
    }

    println!(
        "CRI pod sandbox through containerd {}, {rounds} rounds each (after {WARMUP} warm-up), \
         chain: portmap",
        containerd_version()
    );
    println!(
        "{:<8} {:>14} {:>14} {:>19} {:>19}",
        "plugin", "start p50 ms", "start p90 ms", "stop+remove p50 ms", "stop+remove p90 ms"
    );
    for s in &setups {
        println!(
            "{:<8} {:>14.1} {:>14.1} {:>19.1} {:>19.1}",
            s.plugin.label(),
            ms(percentile(&s.start, 0.5)),
            ms(percentile(&s.start, 0.9)),
            ms(percentile(&s.stop, 0.5)),
            ms(percentile(&s.stop, 0.9)),
        );
    }
    let ratio = |f: fn(&Setup) -> &Vec<Duration>| {
        ms(percentile(f(&setups[0]), 0.5)) / ms(percentile(f(&setups[1]), 0.5))
    };
    println!(
        "ratio unicni/bridge (median): start {:.2}, stop+remove {:.2}",
        ratio(|s| &s.start),
        ratio(|s| &s.stop)
    );
    for s in &setups {
        let ports = s.net.bridge_ports();
        assert!(
            ports.is_empty(),
            "{}: links left on {} after the bench: {ports:?}",
            s.plugin.label(),
            s.net.bridge
        );
    }
    drop(setups);
}

fn containerd_version() -> String {
    runtimes::util::sh("containerd", &["--version"])
        .split_whitespace()
        .nth(2)
        .unwrap_or("?")
        .to_string()
}

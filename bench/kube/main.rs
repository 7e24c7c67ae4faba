//! The Kubernetes watch paths at scale: the emulated API server with N Nodes (default
//! 1,000) and their Pods, and N agents' watch paths in this process (one tokio runtime: N
//! Node caches, flannel's lease view, and N Pod caches selected by `spec.nodeName`,
//! terway's pod view; the same code the agents run, one client each). Measures, per agent
//! at steady state, requests per minute by verb (the emulator's request log), bytes per
//! minute (a counting relay in front of the emulator) and resident memory; then how long
//! a Node added takes to reach every Node cache (p50/p99/max). Targets: 0 LIST per agent
//! per minute at steady state; a new Node seen everywhere in under 2 s.
//!
//! `cargo bench -p unicni-store --bench kube -- [--agents 1000] [--pods-per-node 10]
//! [--window-seconds 10] [--adds 3] [--bookmark-ms 1000]`
//! (a steady-state minute: `--window-seconds 60`). Needs no root; about 4 file descriptors
//! and one emulator thread per watch (`ulimit -n` of 20,000 covers 1,000 agents).

mod scale;

use std::time::Duration;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => match args.get(i + 1).and_then(|v| v.parse().ok()) {
            Some(v) => v,
            None => {
                eprintln!("{name} needs a number");
                std::process::exit(2);
            }
        },
        None => default,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let opts = scale::Opts {
        agents: arg("--agents", 1000),
        pods_per_node: arg("--pods-per-node", 10),
        window: Duration::from_secs(arg("--window-seconds", 10)),
        adds: arg("--adds", 3),
        bookmark: Duration::from_millis(arg("--bookmark-ms", 1000)),
        progress: true,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let results = rt.block_on(scale::run(&opts));
    println!("{}", scale::table(&results));
    // The emulator's threads hold their watches open; nothing to wait for.
    std::process::exit(0);
}

//! Same-node pod-to-pod TCP throughput (iperf3) and request/response latency on a bridge,
//! without and with the eBPF fast path, alternating in one run, medians and ratio.
//! Root only. `cargo bench -p unicni-bpf --bench fastpath`
//! (BENCH_SECONDS per iperf3 run, default 5; BENCH_ROUNDS, default 3).

#[path = "../../crates/bpf/tests/common/mod.rs"]
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Instant;
use unicni_bpf::FastPath;
use unicni_testkit::perf::{bench_may_run, connect_nodelay, echo_once, env_or, iperf_gbit, median};

const RR_ROUNDS: usize = 5000;

/// 1-byte request / 1-byte response on one connection: (median µs, p99 µs).
fn request_response(t: &Topo) -> (f64, f64) {
    let echo = echo_once(&t.pod_b, SocketAddr::from(([0, 0, 0, 0], 5302)));
    let addr: SocketAddr = format!("{IP_B}:5302").parse().unwrap();
    let mut c = connect_nodelay(&t.pod_a, addr);
    let mut samples = Vec::with_capacity(RR_ROUNDS);
    let mut b = [1u8; 1];
    for i in 0..RR_ROUNDS + 200 {
        let start = Instant::now();
        c.write_all(&b).unwrap();
        c.read_exact(&mut b).unwrap();
        if i >= 200 {
            samples.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(c);
    let _ = echo.join();
    samples.sort_by(|a, b| a.total_cmp(b));
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

fn set_fast_path(t: &Topo, on: bool) {
    let (ha, hb) = t.hosts();
    let pin = t.pin_dir.clone();
    t.in_node(move || {
        let mut fp = FastPath::load_or_adopt(&pin).expect("load the fast path");
        for (i, ip, mac) in [(ha, IP_A, MAC_A), (hb, IP_B, MAC_B)] {
            let ip = ip.parse().unwrap();
            if on {
                fp.attach(i).unwrap();
                fp.upsert_endpoint(ip, i, mac).unwrap();
            } else {
                fp.detach(i).unwrap();
                fp.remove_endpoint(ip).unwrap();
            }
        }
    });
}

fn redirected(t: &Topo) -> u64 {
    let pin = t.pin_dir.clone();
    t.in_node(move || FastPath::open(&pin).unwrap().stats().unwrap().redirected)
}

fn main() {
    if !bench_may_run("bench/bpf") {
        return;
    }
    let seconds: u32 = env_or("BENCH_SECONDS", 5);
    let rounds: u32 = env_or("BENCH_ROUNDS", 3);
    let t = Topo::new("bench");
    assert!(t.ping_from_a(IP_B, 1), "pods must reach each other");
    let mut res: [(Vec<f64>, Vec<f64>, Vec<f64>); 2] = Default::default();
    for round in 0..rounds {
        for (slot, on) in [(0usize, false), (1usize, true)] {
            set_fast_path(&t, on);
            let before = redirected(&t);
            let g = iperf_gbit(&t.pod_a, &t.pod_b, IP_B, 5301, seconds);
            let (med, p99) = request_response(&t);
            let hits = redirected(&t) - before;
            // Each mode must really be what it claims.
            assert_eq!(on, hits > 0, "fast path {on} but {hits} redirects");
            eprintln!(
                "round {}: {:<10} {g:6.2} Gbit/s  rr median {med:6.1} µs  p99 {p99:6.1} µs  redirects {hits}",
                round + 1,
                if on { "fast path" } else { "bridge" }
            );
            res[slot].0.push(g);
            res[slot].1.push(med);
            res[slot].2.push(p99);
        }
    }
    let row = |slot: usize| {
        (
            median(res[slot].0.clone()),
            median(res[slot].1.clone()),
            median(res[slot].2.clone()),
        )
    };
    let (b, f) = (row(0), row(1));
    println!("same-node pod to pod, {rounds} alternating rounds, medians ({seconds}s iperf3, {RR_ROUNDS} TCP 1-byte round trips)");
    println!(
        "{:<28} {:>12} {:>14} {:>12}",
        "path", "Gbit/s", "rr median µs", "rr p99 µs"
    );
    println!(
        "{:<28} {:>12.2} {:>14.1} {:>12.1}",
        "bridge (no eBPF)", b.0, b.1, b.2
    );
    println!(
        "{:<28} {:>12.2} {:>14.1} {:>12.1}",
        "eBPF fast path (peer redir)", f.0, f.1, f.2
    );
    println!(
        "ratio fast/bridge: throughput {:.2}x, rr median latency {:.2}x, rr p99 latency {:.2}x",
        f.0 / b.0,
        f.1 / b.1,
        f.2 / b.2
    );
}

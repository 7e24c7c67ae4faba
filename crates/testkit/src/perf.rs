//! What the benchmarks measure with: a bulk-throughput run of iperf3 between two network
//! namespaces, and the median of samples.

use crate::netns::in_netns;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether a TCP socket of the calling thread's network namespace listens on `port`.
pub fn listening_on(port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .any(|l| l.contains(&needle) && l.split_whitespace().nth(3) == Some("0A"))
}

/// Gbit/s received by an iperf3 server in `to` (one run on `port`) from a client in `from`
/// sending to `target` for `seconds`. Panics when iperf3 is missing or gives no result.
pub fn iperf_gbit(from: &str, to: &str, target: &str, port: u16, seconds: u32) -> f64 {
    let port_s = port.to_string();
    let mut server = Command::new("ip")
        .args(["netns", "exec", to, "iperf3", "-s", "-1", "-p", &port_s])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start iperf3 server (Debian package iperf3)");
    let until = Instant::now() + Duration::from_secs(5);
    while !in_netns(to, move || listening_on(port)) {
        assert!(
            Instant::now() < until,
            "iperf3 server did not start in {to}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = seconds.to_string();
    let out = Command::new("ip")
        .args(["netns", "exec", from, "iperf3", "-c", target, "-p", &port_s])
        .args(["-J", "-t", &secs])
        .output()
        .expect("run iperf3 client");
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 JSON");
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("iperf3 gave no result: {}", v["error"]))
        / 1e9
}

/// The median of the samples (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The number in the environment variable `name`, or `default` when it is unset or not a
/// number of that type.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether a root-only benchmark binary (`harness = false`) should run: false for cargo's
/// `--list` (it has nothing to list); without root it exits with a note naming `bench`.
pub fn bench_may_run(bench: &str) -> bool {
    if std::env::args().any(|a| a == "--list") {
        return false;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("{bench} needs root (network namespaces, eBPF)");
        std::process::exit(1);
    }
    true
}

/// A TCP server in `ns` on `addr` that accepts one connection and echoes each byte back
/// until the client closes it; join the handle after closing the client.
pub fn echo_once(ns: &str, addr: std::net::SocketAddr) -> std::thread::JoinHandle<()> {
    use std::io::{Read, Write};
    let listener = in_netns(ns, move || std::net::TcpListener::bind(addr).unwrap());
    std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        c.set_nodelay(true).unwrap();
        let mut b = [0u8; 1];
        while matches!(c.read(&mut b), Ok(1)) {
            if c.write_all(&b).is_err() {
                break;
            }
        }
    })
}

/// A TCP connection from `ns` to `to` (two seconds to connect), with Nagle off.
pub fn connect_nodelay(ns: &str, to: std::net::SocketAddr) -> std::net::TcpStream {
    let c = in_netns(ns, move || {
        std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap()
    });
    c.set_nodelay(true).unwrap();
    c
}

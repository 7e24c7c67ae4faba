//! `unicni lab bench`: cross-node pod-to-pod TCP throughput (iperf3) and request/response
//! latency for vxlan and host-gw, each against the same two nodes talking over their own
//! underlay addresses (host network: the limit), printed as ratios to that limit.

use super::topology::{Lab, Mode, StoreChoice};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use unicni_net::NetNs;

#[derive(Debug, Serialize)]
struct Measure {
    path: String,
    gbit_per_s: f64,
    rr_median_us: f64,
    rr_p99_us: f64,
}

const RR_ROUNDS: usize = 2000;

fn iperf(src: &str, dst: &str, ip: &str, seconds: u32) -> Result<f64> {
    let mut server = Command::new("ip")
        .args(["netns", "exec", dst, "iperf3", "-s", "-1", "-p", "5201"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start iperf3 (Debian package iperf3)")?;
    let dst_ns = NetNs::open(Path::new(&format!("/var/run/netns/{dst}")))?;
    // Connecting to see if it listens would use up the one test `-1` allows: look for
    // the listening socket (port 5201 = 0x1451, state 0A) in the namespace's table.
    let listening = || {
        std::fs::read_to_string("/proc/thread-self/net/tcp6")
            .unwrap_or_default()
            .lines()
            .chain(
                std::fs::read_to_string("/proc/thread-self/net/tcp")
                    .unwrap_or_default()
                    .lines(),
            )
            .any(|l| l.contains(":1451 ") && l.split_whitespace().nth(3) == Some("0A"))
    };
    let until = Instant::now() + Duration::from_secs(5);
    while !dst_ns.run(listening)? {
        if Instant::now() > until {
            let _ = server.kill();
            let _ = server.wait();
            bail!("iperf3 server in {dst} did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new("ip")
        .args([
            "netns", "exec", src, "iperf3", "-c", ip, "-p", "5201", "-J", "-t",
        ])
        .arg(seconds.to_string())
        .output()
        .context("run iperf3 client")?;
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("decode iperf3 JSON")?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .with_context(|| format!("iperf3 {src} -> {ip} gave no result: {}", v["error"]))
}

/// 1-byte request, 1-byte response over one TCP connection; returns (median, p99) in µs.
fn request_response(src: &str, dst: &str, ip: &str) -> Result<(f64, f64)> {
    let dst_ns = NetNs::open(Path::new(&format!("/var/run/netns/{dst}")))?;
    let src_ns = NetNs::open(Path::new(&format!("/var/run/netns/{src}")))?;
    let listener = dst_ns.run(|| TcpListener::bind(("0.0.0.0", 5202)))??;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut c, _) = listener.accept()?;
        c.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while c.read(&mut b)? == 1 {
            c.write_all(&b)?;
        }
        Ok(())
    });
    let addr: SocketAddr = format!("{ip}:5202").parse()?;
    let mut c = src_ns.run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(2)))??;
    c.set_nodelay(true)?;
    let mut samples = Vec::with_capacity(RR_ROUNDS);
    let mut b = [1u8; 1];
    for i in 0..RR_ROUNDS + 100 {
        let t = Instant::now();
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
        if i >= 100 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(c);
    let _ = echo.join();
    samples.sort_by(|a, b| a.total_cmp(b));
    Ok((
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    ))
}

fn measure(path: String, src: &str, dst: &str, ip: &str, seconds: u32) -> Result<Measure> {
    eprintln!("    {path}: iperf3 {seconds}s, {RR_ROUNDS} request/response rounds");
    let gbit = iperf(src, dst, ip, seconds)?;
    let (med, p99) = request_response(src, dst, ip)?;
    Ok(Measure {
        path,
        gbit_per_s: gbit,
        rr_median_us: med,
        rr_p99_us: p99,
    })
}

pub fn run(lab: &Lab, seconds: u32, output: &str) -> Result<ExitCode> {
    let mut rows = Vec::new();
    for mode in [Mode::Vxlan, Mode::HostGw] {
        let opts = super::UpOpts {
            backend: super::Backend::Flannel,
            mode: Some(mode),
            ip_stack: super::IpStack::Ipv4,
            nodes: 2,
            pods_per_node: 1,
            store: StoreChoice::File,
            lease_ttl: 10,
            route_quota: 200,
            no_second_cluster: true,
        };
        eprintln!("==> {} lab (2 nodes, 1 pod each)", mode.as_str());
        let st = super::up_or_clean(lab, &opts)?;
        let result = (|| -> Result<()> {
            let (a, b) = (&st.pods[0], &st.pods[1]);
            if mode == Mode::Vxlan {
                rows.push(measure(
                    "host network (node to node, the limit)".into(),
                    &st.nodes[0].netns,
                    &st.nodes[1].netns,
                    &st.nodes[1].ip,
                    seconds,
                )?);
            }
            rows.push(measure(
                format!("pod to pod across nodes, {}", mode.as_str()),
                &a.netns,
                &b.netns,
                &b.ip,
                seconds,
            )?);
            Ok(())
        })();
        super::destroy(lab)?;
        result?;
    }
    let limit = &rows[0];
    let (lg, ll) = (limit.gbit_per_s, limit.rr_median_us);
    if output == "json" {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "path": r.path, "gbit_per_s": r.gbit_per_s, "rr_median_us": r.rr_median_us,
                    "rr_p99_us": r.rr_p99_us, "throughput_ratio": r.gbit_per_s / lg,
                    "latency_ratio": r.rr_median_us / ll,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "results": v }));
    } else {
        println!(
            "{:<42} {:>9} {:>8} {:>11} {:>9} {:>8}",
            "PATH", "GBIT/S", "x LIMIT", "RR MED µs", "RR p99", "x LIMIT"
        );
        for r in &rows {
            println!(
                "{:<42} {:>9.2} {:>8.2} {:>11.1} {:>9.1} {:>8.2}",
                r.path,
                r.gbit_per_s,
                r.gbit_per_s / lg,
                r.rr_median_us,
                r.rr_p99_us,
                r.rr_median_us / ll
            );
        }
        println!(
            "(throughput: higher is better, ratio to the host network; latency: lower is better)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

//! The connectivity matrix, with real TCP connections between lab namespaces. The
//! listener reports the source address it saw, which is how masquerade (pod to outside:
//! the node's address) and its absence (pod to pod: the pod's own address) are checked.

use super::topology::{Lab, LabState, Mode, PodState};
use anyhow::Result;
use serde::Serialize;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};
use unicni_net::NetNs;

#[derive(Debug, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub from: String,
    pub to: String,
    /// What must happen: the source address the target must see, or "unreachable".
    pub expected: String,
    /// What happened: the source address seen, or the error.
    pub observed: String,
    pub passed: bool,
}

static PORT: AtomicU16 = AtomicU16::new(0);

fn netns(name: &str) -> Result<NetNs> {
    Ok(NetNs::open(Path::new(&format!("/var/run/netns/{name}")))?)
}

/// Connects from namespace `src` to `ip` where a listener in namespace `dst` waits;
/// returns the source address the listener saw.
pub fn probe(src: &str, dst: &str, ip: &str) -> Result<String, String> {
    let port =
        20000 + (std::process::id() as u16 % 20000) + PORT.fetch_add(1, Ordering::Relaxed) % 5000;
    let dst_ns = netns(dst).map_err(|e| e.to_string())?;
    let listener = dst_ns
        .run(|| TcpListener::bind(("0.0.0.0", port)))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("listen in {dst}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr: SocketAddr = format!("{ip}:{port}").parse().map_err(|e| format!("{e}"))?;
    let src_ns = netns(src).map_err(|e| e.to_string())?;
    let conn = src_ns
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        match listener.accept() {
            Ok((_, peer)) => {
                drop(conn);
                return Ok(peer.ip().to_string());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err("connected, but the listener saw no connection in 2s".into())
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
}

fn expect_source(
    name: &str,
    from: (&str, &str),
    to: (&str, &str, &str),
    want: &str,
) -> CheckResult {
    let r = probe(from.1, to.1, to.2);
    let observed = match &r {
        Ok(seen) => seen.clone(),
        Err(e) => e.clone(),
    };
    CheckResult {
        name: name.into(),
        from: from.0.into(),
        to: to.0.into(),
        expected: format!("source {want}"),
        passed: r.as_deref() == Ok(want),
        observed,
    }
}

fn label(p: &PodState) -> String {
    format!("{} ({})", p.name, p.ip)
}

pub fn run(lab: &Lab, st: &LabState) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let pods = &st.pods;
    let all_pairs = pods.len() <= 16;
    for a in pods {
        for b in pods.iter().filter(|b| b.name != a.name) {
            let same = a.node == b.node;
            // Large labs: every pod to the first pod of each node, not the full square.
            if !same && !all_pairs && !b.name.ends_with("-p1") {
                continue;
            }
            let name = if same {
                "pod to pod, same node"
            } else {
                "pod to pod, across nodes"
            };
            out.push(expect_source(
                name,
                (&label(a), &a.netns),
                (&label(b), &b.netns, &b.ip),
                &a.ip,
            ));
        }
    }
    let vpc = lab.vpc_ns();
    let outside = lab.outside_ip();
    for a in pods {
        let node_ip = lab.node_ip(a.node);
        out.push(expect_source(
            "pod to outside (masquerade)",
            (&label(a), &a.netns),
            (&format!("outside ({outside})"), &vpc, &outside),
            &node_ip,
        ));
    }
    for n in &st.nodes {
        for p in pods
            .iter()
            .filter(|p| p.node != n.index && p.name.ends_with("-p1"))
        {
            // The source is the node's VTEP address (vxlan) or underlay address (host-gw).
            let r = probe(&n.netns, &p.netns, &p.ip);
            out.push(CheckResult {
                name: "node host to pod on another node".into(),
                from: format!("node-{} ({})", n.index, n.ip),
                to: label(p),
                expected: "connected".into(),
                passed: r.is_ok(),
                observed: r.unwrap_or_else(|e| e),
            });
        }
    }
    // Flannel pod addresses are not part of the VPC: an outside host cannot reach them
    // directly (services reach pods through a node: NodePort). In vpc-route mode the VPC
    // route table makes them routable: the outside host reaches the pod, unmasqueraded.
    if let (Some(p), Mode::VpcRoute) = (pods.first(), st.mode) {
        let r = probe(&vpc, &p.netns, &p.ip);
        out.push(CheckResult {
            name: "outside to pod, via the VPC route table".into(),
            from: format!("outside ({outside})"),
            to: label(p),
            expected: outside.to_string(),
            passed: r.as_deref() == Ok(outside.to_string().as_str()),
            observed: r.unwrap_or_else(|e| e),
        });
    } else if let Some(p) = pods.first() {
        let r = probe(&vpc, &p.netns, &p.ip);
        out.push(CheckResult {
            name: "outside to pod, direct (not routable in flannel)".into(),
            from: format!("outside ({outside})"),
            to: label(p),
            expected: "unreachable".into(),
            passed: r.is_err(),
            observed: match r {
                Ok(seen) => format!("reached, source {seen}"),
                Err(e) => e,
            },
        });
    }
    out
}

/// Prints the results; returns how many failed.
pub fn print(results: &[CheckResult], output: &str) -> usize {
    let failed = results.iter().filter(|r| !r.passed).count();
    if output == "json" {
        println!(
            "{}",
            serde_json::json!({"checks": results, "passed": results.len() - failed, "failed": failed})
        );
    } else {
        println!(
            "{:<34} {:<26} {:<26} {:<22} RESULT",
            "CHECK", "FROM", "TO", "SEEN"
        );
        for r in results {
            println!(
                "{:<34} {:<26} {:<26} {:<22} {}",
                r.name,
                r.from,
                r.to,
                r.observed,
                if r.passed { "pass" } else { "FAIL" }
            );
        }
        println!("{} passed, {} failed", results.len() - failed, failed);
    }
    failed
}

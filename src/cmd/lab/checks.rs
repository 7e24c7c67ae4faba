//! Connectivity checks with real packets.

use super::pods::Pod;
use super::topology::{Lab, NODE_SUBNET};
use serde::Serialize;
use std::process::{Command, Stdio};

#[derive(Debug, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub from: String,
    pub to: String,
    pub passed: bool,
}

fn ping(netns: &str, target: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", netns, "ping", "-c", "1", "-W", "2", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn run(_lab: &Lab, pods: &[Pod]) -> Vec<CheckResult> {
    let gateway = NODE_SUBNET
        .parse::<ipnet::IpNet>()
        .ok()
        .and_then(|n| n.hosts().next())
        .map(|g| g.to_string())
        .unwrap_or_default();
    let mut out = Vec::new();
    for a in pods {
        out.push(CheckResult {
            name: "pod to gateway".into(),
            from: a.name.clone(),
            to: gateway.clone(),
            passed: ping(&a.netns, &gateway),
        });
        for b in pods.iter().filter(|b| b.name != a.name) {
            out.push(CheckResult {
                name: "pod to pod, same node".into(),
                from: format!("{} ({})", a.name, a.ip),
                to: format!("{} ({})", b.name, b.ip),
                passed: ping(&a.netns, &b.ip),
            });
        }
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
        println!("{:<24} {:<24} {:<24} RESULT", "CHECK", "FROM", "TO");
        for r in results {
            println!(
                "{:<24} {:<24} {:<24} {}",
                r.name,
                r.from,
                r.to,
                if r.passed { "pass" } else { "FAIL" }
            );
        }
        println!("{} passed, {} failed", results.len() - failed, failed);
    }
    failed
}

//! `unicni lab status`: what the running lab is made of and whether its processes live.

use super::nodes::alive;
use super::topology::{Backend, Lab, LabState, OTHER};
use anyhow::Result;

/// One line per process of the lab (state, PID, where it serves) and per node.
pub fn print(lab: &Lab, st: &LabState) -> Result<()> {
    let state = |pid: Option<u32>| match pid {
        Some(p) if alive(p) => format!("running (pid {p})"),
        Some(p) => format!("NOT RUNNING (pid {p} gone)"),
        None => "stopped".to_string(),
    };
    println!(
        "lab {} ({}): {} / {}, {} store{}{}",
        lab.prefix,
        lab.root.display(),
        st.backend.as_str(),
        st.mode.as_str(),
        st.store.as_str(),
        if st.policy { ", NetworkPolicy" } else { "" },
        match st.datapath.as_str() {
            "routing" => String::new(),
            d => format!(", datapath {d}"),
        }
    );
    if st.kube_pid.is_some() {
        println!(
            "API server       https://{}  {}  (kubectl: ip netns exec {} kubectl --kubeconfig {})",
            lab.kube_server(),
            state(st.kube_pid),
            lab.vpc_ns(),
            lab.kubeconfig().display()
        );
    }
    if st.etcd_pid.is_some() {
        println!("etcd             {}", state(st.etcd_pid));
    }
    if st.cloud_pid.is_some() {
        println!(
            "cloud emulator   {}  {}",
            lab.cloud_endpoint(),
            state(st.cloud_pid)
        );
    }
    for n in st.nodes.iter().chain(&st.other_nodes) {
        let who = if n.index == OTHER {
            "second cluster".to_string()
        } else {
            format!("node {}", n.index)
        };
        let pods = st
            .pods
            .iter()
            .chain(&st.other_pods)
            .filter(|p| p.node == n.index)
            .count();
        println!(
            "{who:<16} {} {}{}  agent {}  {pods} pod{}",
            n.name,
            n.ip,
            match st.backend {
                Backend::Flannel if !n.subnet.is_empty() => format!(" subnet {}", n.subnet),
                _ => String::new(),
            },
            state(n.agent_pid),
            if pods == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

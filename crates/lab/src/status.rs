//! `unicni lab status`: what the running lab is made of and whether its processes live.

use super::nodes::{alive, http_body};
use super::topology::{Backend, Lab, LabState, OTHER};
use anyhow::Result;
use k8s_openapi::api::core::v1::Node;
use std::collections::BTreeMap;

/// The condition type the terway agent writes (unicni-terway's `ip_condition::CONDITION`).
const CONDITION: &str = "SufficientIP";
/// What the terway agent's `/readyz` says while its pool is exhausted.
const EXHAUSTED_MARK: &str = "ENI pool exhausted, new pods fail:";

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
    let short = ip_shortage(lab, st);
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
        if let Some(why) = short.get(&n.name) {
            println!("{:<16} {why}", "");
        }
    }
    Ok(())
}

/// Terway nodes short of addresses, by node name, with the line `status` shows: on the
/// Kubernetes store the Node's `SufficientIP` condition when False (what an operator's
/// `kubectl describe node` shows), else the agent's `/readyz` reason. Lookups that fail
/// show nothing: `status` reports processes first.
fn ip_shortage(lab: &Lab, st: &LabState) -> BTreeMap<String, String> {
    if st.backend != Backend::Terway {
        return BTreeMap::new();
    }
    if lab.on_kube() && st.kube_pid.is_some_and(alive) {
        let nodes = lab.api(|client| async move {
            let api: kube::Api<Node> = kube::Api::all(client);
            Ok(api.list(&Default::default()).await?.items)
        });
        return nodes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| {
                let c = n
                    .status?
                    .conditions?
                    .into_iter()
                    .find(|c| c.type_ == CONDITION && c.status == "False")?;
                Some((
                    n.metadata.name?,
                    format!(
                        "{CONDITION}=False ({}): {}",
                        c.reason.unwrap_or_default(),
                        c.message.unwrap_or_default()
                    ),
                ))
            })
            .collect();
    }
    st.nodes
        .iter()
        .filter(|n| n.agent_pid.is_some_and(alive))
        .filter_map(|n| {
            let body = http_body(&lab.agent_get(n.index, "/readyz").ok()?);
            let (_, why) = body.split_once(EXHAUSTED_MARK)?;
            Some((n.name.clone(), format!("{CONDITION}=False: {}", why.trim())))
        })
        .collect()
}

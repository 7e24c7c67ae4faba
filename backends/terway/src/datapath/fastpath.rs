//! The eBPF fast path's share of the shared-ENI datapath (`terway.datapath = "ebpf"`,
//! `bpf/terway.c`, docs/ebpf.md). The routing datapath is always complete underneath: the
//! programs only short-cut what it would do, so a pod without them is slower, not broken.
//!
//! - plugin ADD: the pod programs on the host veth, then the pod's entries (pod IPv4 and
//!   IPv6 -> host veth, ENI link, pod MAC, host veth MAC); in that order, because the ENI program
//!   relies on the veth's egress program to learn which flows must stay on the host path.
//! - plugin DEL: the entry first (no more redirects into the pod), then the programs.
//! - agent: the ENI program on every ENI link it prepares ([`attach_eni`]).

use super::veth::Veth;
use crate::proto::{eni_ifindex, PodNetwork};
use std::net::IpAddr;
use std::path::Path;
use unicni_bpf::{TerwayFastPath, TerwayPod};
use unicni_core::{Error, Result};

fn bpf(e: unicni_bpf::BpfError) -> Error {
    Error::kernel_in("eBPF fast path", e)
}

/// Attaches the pod programs to the pod's host veth and adds the pod's entries (one per
/// address family).
pub(super) fn attach_pod(pin: &str, v: &Veth, net: &PodNetwork) -> Result<()> {
    let ips = super::shared::pod_ips(net);
    if ips.is_empty() {
        return Ok(());
    }
    let eni = eni_ifindex(net.eni.table).ok_or_else(|| {
        Error::kernel(format!(
            "eBPF fast path: ENI {} has table {}, not one of an ENI link",
            net.eni.id, net.eni.table
        ))
    })?;
    let mut fp = TerwayFastPath::open(Path::new(pin)).map_err(bpf)?;
    fp.attach_pod(v.host_index).map_err(bpf)?;
    for ip in ips {
        fp.upsert_pod(&TerwayPod {
            ip,
            veth_ifindex: v.host_index,
            eni_ifindex: eni,
            pod_mac: v.pod_mac,
            veth_mac: v.host_mac,
        })
        .map_err(bpf)?;
    }
    Ok(())
}

/// Removes the pod's entries (by address; by what points at its veth only when the
/// addresses are not known) and the programs on its veth. Nothing pinned (agent never
/// loaded it, or uninstalled) is fine.
pub(super) fn forget_pod(pin: &str, veth_index: Option<u32>, ips: &[IpAddr]) -> Result<()> {
    let mut fp = match TerwayFastPath::open(Path::new(pin)) {
        Ok(fp) => fp,
        Err(unicni_bpf::BpfError::NotLoaded { .. }) => return Ok(()),
        Err(e) => return Err(bpf(e)),
    };
    for ip in ips {
        fp.remove_pod(*ip).map_err(bpf)?;
    }
    if let Some(index) = veth_index {
        if ips.is_empty() {
            // Lists every entry of both families: only when the addresses are unknown.
            fp.remove_pods_on(index).map_err(bpf)?;
        }
        fp.detach(index).map_err(bpf)?;
    }
    Ok(())
}

/// What CHECK expects of the fast path for a pod: its entries, pointing at its veth.
pub(super) fn check_pod(pin: &str, veth_index: u32, net: &PodNetwork, gaps: &mut Vec<String>) {
    let ips = super::shared::pod_ips(net);
    if ips.is_empty() {
        return;
    }
    let fp = match TerwayFastPath::open(Path::new(pin)) {
        Ok(fp) => fp,
        Err(e) => {
            gaps.push(format!("the eBPF fast path at {pin} ({e})"));
            return;
        }
    };
    match fp.pods() {
        Ok(pods) => {
            for ip in ips {
                if !pods
                    .iter()
                    .any(|p| p.ip == ip && p.veth_ifindex == veth_index)
                {
                    gaps.push(format!("eBPF fast path entry of {ip}"));
                }
            }
        }
        Err(e) => gaps.push(format!("eBPF fast path entries ({e})")),
    }
    let attached = fp
        .attachments()
        .map(|a| a.iter().any(|(i, _, eni)| *i == veth_index && !eni))
        .unwrap_or(false);
    if !attached {
        gaps.push(format!(
            "eBPF fast path programs on the host veth (ifindex {veth_index})"
        ));
    }
}

/// The agent's part: the ENI program on an ENI link of a shared-mode node.
pub fn attach_eni(pin: &Path, ifindex: u32) -> Result<()> {
    let mut fp = TerwayFastPath::open(pin).map_err(bpf)?;
    fp.attach_eni(ifindex).map(|_| ()).map_err(bpf)
}

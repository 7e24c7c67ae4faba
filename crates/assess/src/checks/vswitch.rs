//! Terway target: enough free vSwitch addresses in every zone that has nodes.

use super::{plural, CheckId};
use crate::context::Context;
use crate::{CheckResult, Finding};
use std::collections::BTreeMap;
use unicni_capacity::prefix::{free_blocks, Blocks, ADDRESSES_PER_PREFIX};
use unicni_capacity::terway::free_ips_by_zone;
use unicni_capacity::VSwitch;
use unicni_config::BackendKind;

/// Free addresses below this multiple of the need leave no room for growth or churn
/// (fixed-IP holds, rolling updates that surge pods).
const HEADROOM_NUM: u64 = 5;
const HEADROOM_DEN: u64 = 4;

pub fn run(cx: &Context) -> CheckResult {
    let id = CheckId::VswitchIps;
    if cx.target.backend() != BackendKind::Terway {
        return CheckResult::skipped(id.as_str(), id.title(), "the target is not terway");
    }
    let ids = &cx.target.config.terway.vswitches;
    let mut findings = Vec::new();
    let (free, missing) = free_ips_by_zone(&cx.inv.cloud.vswitches, ids);
    for m in &missing {
        findings.push(Finding::warning(
            format!("vswitch/{m}"),
            "the target config names this vSwitch but the inventory does not describe it; its free addresses are not counted",
            "add it under cloud.vswitches in the inventory (assess export does when it can reach the cloud)",
        ));
    }
    let mut need: BTreeMap<&str, u64> = BTreeMap::new();
    let mut zoneless = 0u64;
    for node in &cx.inv.nodes {
        let pods = cx.load_of(&node.name).pod_network;
        match node.zone.as_deref() {
            Some(z) => *need.entry(z).or_default() += pods,
            None => zoneless += 1,
        }
    }
    if zoneless > 0 {
        findings.push(Finding::warning(
            "cluster",
            format!(
                "{} have no zone: their pods are not counted against any vSwitch",
                plural(zoneless, "node", "nodes")
            ),
            "add `zone` to every node in the inventory",
        ));
    }
    // Prefix mode: each node takes whole aligned /28 blocks of its own.
    let prefix = cx.target.config.terway.ip_prefix
        && cx.target.config.terway.mode == unicni_config::TerwayMode::SharedEni;
    let blocks = prefix.then(|| blocks_by_zone(&cx.inv.cloud.vswitches, ids));
    let free = match &blocks {
        Some(b) => b
            .iter()
            .map(|(z, b)| (*z, b.at_most * ADDRESSES_PER_PREFIX))
            .collect(),
        None => free,
    };
    if prefix {
        need.clear();
        for node in &cx.inv.nodes {
            if let Some(z) = node.zone.as_deref() {
                let pods = cx.load_of(&node.name).pod_network;
                *need.entry(z).or_default() +=
                    pods.div_ceil(ADDRESSES_PER_PREFIX) * ADDRESSES_PER_PREFIX;
            }
        }
    }
    let mut short = 0;
    for (zone, pods) in &need {
        if let Some(b) = blocks.as_ref().and_then(|b| b.get(zone)) {
            let sure = b.at_least * ADDRESSES_PER_PREFIX;
            let room = b.at_most * ADDRESSES_PER_PREFIX;
            if sure < *pods && *pods <= room {
                let message = format!(
                    "terway.ip_prefix: the nodes here need {} /28 blocks; the target vSwitches' free addresses hold {} to {} whole blocks depending on where their used addresses sit",
                    pods / ADDRESSES_PER_PREFIX, b.at_least, b.at_most
                );
                // Needing more than half of the best case makes fragmentation matter.
                if *pods * 2 > room {
                    findings.push(Finding::warning(
                        format!("zone/{zone}"),
                        message,
                        format!("add a vSwitch in {zone} with room to terway.vswitches, or check the vSwitches' free /28 blocks"),
                    ));
                } else {
                    findings.push(Finding::info(format!("zone/{zone}"), message));
                }
            }
        }
        let have = free.get(zone).copied().unwrap_or(0);
        let object = format!("zone/{zone}");
        if !free.contains_key(zone) {
            short += 1;
            findings.push(Finding::blocker(
                &object,
                format!("{} need addresses here but no target vSwitch is in this zone (pod vSwitches must be in the node's zone)", plural(*pods, "pod", "pods")),
                format!("create a vSwitch in {zone} and add it to terway.vswitches"),
            ));
        } else if have < *pods {
            short += 1;
            findings.push(Finding::blocker(
                &object,
                format!("{pods} pods need addresses, the target vSwitches here have {have} free"),
                format!(
                    "add vSwitches in {zone} with at least {} more free addresses",
                    pods - have
                ),
            ));
        } else if have * HEADROOM_DEN < pods * HEADROOM_NUM {
            findings.push(Finding::warning(
                &object,
                format!("{pods} pods need addresses, {have} are free: less than 25% to spare"),
                format!("add a vSwitch in {zone} to terway.vswitches (vSwitches can be added at any time)"),
            ));
        } else {
            findings.push(Finding::info(
                &object,
                format!("{pods} pods, {have} free addresses"),
            ));
        }
    }
    let summary = format!(
        "{} of {} with nodes short of addresses; {} free in total{}",
        short,
        plural(need.len() as u64, "zone", "zones"),
        free.values().sum::<u64>(),
        if prefix {
            " in whole /28 blocks (prefix mode)"
        } else {
            ""
        }
    );
    CheckResult::new(id.as_str(), id.title(), summary, findings)
}

/// Free aligned /28 blocks per zone of the vSwitches `ids` (all when empty).
fn blocks_by_zone<'a>(known: &'a [VSwitch], ids: &[String]) -> BTreeMap<&'a str, Blocks> {
    let mut zones: BTreeMap<&str, Blocks> = BTreeMap::new();
    for v in known
        .iter()
        .filter(|v| ids.is_empty() || ids.contains(&v.id))
    {
        if let ipnet::IpNet::V4(net) = v.cidr {
            let z = zones.entry(v.zone.as_str()).or_default();
            *z = *z + free_blocks(net, v.free_ips);
        }
    }
    zones
}

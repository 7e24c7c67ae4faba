//! kube-proxy's iptables mode, as the lab's peer for Service load balancing: the rules a
//! node running `kube-proxy --proxy-mode iptables` holds for a set of ClusterIP Services,
//! generated from the same Service and EndpointSlice objects the eBPF load balancer reads
//! and loaded with one `iptables-restore` (kube-proxy writes its whole state that way),
//! through x_tables (`iptables-legacy`, the default) or nf_tables (`iptables-nft`).
//!
//! What each new connection pays, as on a real node: nat PREROUTING (pod traffic) and
//! OUTPUT (the node's own) jump to KUBE-SERVICES, walked linearly, one rule per Service
//! port matching `-d ClusterIP/32 -p tcp --dport`; the match jumps to the Service's
//! KUBE-SVC-* chain (masquerade mark for sources outside the cluster network, then one
//! `statistic --mode random --probability 1/k` jump per endpoint, the last one
//! unconditional) and on to the endpoint's KUBE-SEP-* chain (hairpin mark, DNAT);
//! KUBE-POSTROUTING masquerades marked packets; filter FORWARD keeps kube-proxy's
//! conntrack rules. NodePorts, external IPs and load balancers are left out: the
//! benchmark's traffic never reaches their (empty) chains beyond the jumps kept here.
//!
//! Chain names follow kube-proxy's scheme (a prefix and 16 base32 characters of a SHA-256
//! of the Service port's name and protocol, and for an endpoint also its address), so a
//! reader of `iptables-save` sees the familiar shape.

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};

/// Which iptables the rules go through. kube-proxy's image runs whichever the node
/// already uses; both walk KUBE-SERVICES rule by rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Iptables {
    /// x_tables (`iptables-legacy`): the classic datapath, loads 10,000 Services in
    /// about 2 s.
    Legacy,
    /// nf_tables through the iptables compatibility layer (`iptables-nft`): on this
    /// class of machine loading 10,000 Services takes minutes.
    Nft,
}

impl Iptables {
    fn restore(self) -> &'static str {
        match self {
            Iptables::Legacy => "iptables-legacy-restore",
            Iptables::Nft => "iptables-nft-restore",
        }
    }

    fn save(self) -> &'static str {
        match self {
            Iptables::Legacy => "iptables-legacy-save",
            Iptables::Nft => "iptables-nft-save",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Iptables::Legacy => "legacy",
            Iptables::Nft => "nft",
        }
    }
}

/// The mark KUBE-MARK-MASQ sets (kube-proxy's default `--iptables-masquerade-bit` 14).
const MASQ_MARK: &str = "0x4000";

/// One TCP port of one ClusterIP Service and its ready endpoints, in the order kube-proxy
/// would write them.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePort {
    /// `namespace/name:port-name` (kube-proxy's ServicePortName), used in comments and
    /// chain hashes.
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub endpoints: Vec<SocketAddrV4>,
}

impl ServicePort {
    fn svc_chain(&self) -> String {
        format!("KUBE-SVC-{}", hash16(&format!("{}tcp", self.name)))
    }

    fn sep_chain(&self, ep: &SocketAddrV4) -> String {
        format!("KUBE-SEP-{}", hash16(&format!("{}tcp{ep}", self.name)))
    }
}

/// The first 16 characters of the base32 (RFC 4648, no padding) SHA-256 of `s`.
fn hash16(s: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(s.as_bytes());
    // 16 characters are 80 bits: the first 10 bytes.
    let mut bits: u128 = 0;
    for b in &digest[..10] {
        bits = (bits << 8) | u128::from(*b);
    }
    (0..16)
        .rev()
        .map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// The TCP ports of IPv4 ClusterIP `services` with their ready endpoints from `slices`
/// (matched by the `kubernetes.io/service-name` label and the port name, as kube-proxy
/// does), Services in the given order. Ports without a ready endpoint are left out (kube-proxy
/// writes a REJECT for them in the filter table instead, which no benchmark traffic meets).
pub fn from_objects(services: &[Service], slices: &[EndpointSlice]) -> Vec<ServicePort> {
    let mut out = Vec::new();
    for svc in services {
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let Ok(svc_port) = u16::try_from(port.port) else {
                continue;
            };
            let mut endpoints = Vec::new();
            for slice in slices {
                let labels = slice.metadata.labels.as_ref();
                let owner = labels.and_then(|l| l.get("kubernetes.io/service-name"));
                if slice.metadata.namespace.as_deref().unwrap_or("default") != ns
                    || owner.map(String::as_str) != Some(name)
                    || slice.address_type != "IPv4"
                {
                    continue;
                }
                let Some(target) = slice.ports.iter().flatten().find(|p| p.name == port.name)
                else {
                    continue;
                };
                let Some(target) = target.port.and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                for ep in &slice.endpoints {
                    let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
                    if !ready {
                        continue;
                    }
                    for a in &ep.addresses {
                        if let Ok(a) = a.parse::<Ipv4Addr>() {
                            endpoints.push(SocketAddrV4::new(a, target));
                        }
                    }
                }
            }
            if endpoints.is_empty() {
                continue;
            }
            out.push(ServicePort {
                name: format!("{ns}/{name}:{}", port.name.as_deref().unwrap_or_default()),
                cluster_ip: ip,
                port: svc_port,
                endpoints,
            });
        }
    }
    out
}

/// The `iptables-restore --noflush` input kube-proxy's iptables mode would write for
/// `services` on a node of the cluster network `cluster_cidr` (its `--cluster-cidr`:
/// Service traffic from outside it is masqueraded).
pub fn restore_input(services: &[ServicePort], cluster_cidr: &str) -> String {
    let mut nat = String::from("*nat\n");
    let mut rules = String::new();
    for chain in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        nat.push_str(&format!(":{chain} - [0:0]\n"));
    }
    let portals = "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES";
    rules.push_str(&format!("-A PREROUTING {portals}\n-A OUTPUT {portals}\n"));
    rules.push_str(
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n",
    );
    rules.push_str(&format!(
        "-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n\
         -A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}\n"
    ));
    // KUBE-SERVICES first (the order every new connection walks), then the chains.
    let mut chains = String::new();
    for s in services {
        let svc = s.svc_chain();
        let dest = format!(
            "-m comment --comment \"{} cluster IP\" -m tcp -p tcp -d {}/32 --dport {}",
            s.name, s.cluster_ip, s.port
        );
        nat.push_str(&format!(":{svc} - [0:0]\n"));
        rules.push_str(&format!("-A KUBE-SERVICES {dest} -j {svc}\n"));
        chains.push_str(&format!(
            "-A {svc} {dest} ! -s {cluster_cidr} -j KUBE-MARK-MASQ\n"
        ));
        let n = s.endpoints.len();
        for (i, ep) in s.endpoints.iter().enumerate() {
            let sep = s.sep_chain(ep);
            nat.push_str(&format!(":{sep} - [0:0]\n"));
            let comment = format!("-m comment --comment \"{} -> {ep}\"", s.name);
            if i + 1 < n {
                // The i-th of the remaining n - i endpoints: 1/(n - i), so each gets 1/n.
                chains.push_str(&format!(
                    "-A {svc} {comment} -m statistic --mode random --probability {:.10} -j {sep}\n",
                    1.0 / (n - i) as f64
                ));
            } else {
                chains.push_str(&format!("-A {svc} {comment} -j {sep}\n"));
            }
            let c = format!("-m comment --comment \"{}\"", s.name);
            chains.push_str(&format!(
                "-A {sep} {c} -s {}/32 -j KUBE-MARK-MASQ\n\
                 -A {sep} {c} -m tcp -p tcp -j DNAT --to-destination {ep}\n",
                ep.ip()
            ));
        }
    }
    rules.push_str(
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n",
    );
    nat.push_str(&rules);
    nat.push_str(&chains);
    nat.push_str("COMMIT\n");
    // The filter table: the conntrack state matches every new forwarded connection meets.
    let mut filter = String::from("*filter\n");
    for chain in [
        "KUBE-PROXY-FIREWALL",
        "KUBE-FORWARD",
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-NODEPORTS",
    ] {
        filter.push_str(&format!(":{chain} - [0:0]\n"));
    }
    let new = "-m conntrack --ctstate NEW";
    filter.push_str(&format!(
        "-A INPUT {new} -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
         -A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS\n\
         -A INPUT {new} -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n\
         -A FORWARD {new} -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
         -A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
         -A FORWARD {new} -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A FORWARD {new} -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n\
         -A OUTPUT {new} -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
         -A OUTPUT {new} -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         COMMIT\n"
    ));
    nat + &filter
}

fn restore(ipt: Iptables, netns: &str, input: &str, what: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, ipt.restore(), "--noflush", "-w"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {} (Debian package iptables)", ipt.restore()))?;
    child
        .stdin
        .take()
        .context("iptables-restore stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{} in {netns} ({what}): {}",
            ipt.restore(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Loads the rules for `services` into namespace `netns` in one `iptables-restore`, after
/// removing any kube-proxy rules already there (see [`unload`]).
pub fn load(
    ipt: Iptables,
    netns: &str,
    services: &[ServicePort],
    cluster_cidr: &str,
) -> Result<()> {
    unload(ipt, netns)?;
    restore(
        ipt,
        netns,
        &restore_input(services, cluster_cidr),
        &format!("{} Service ports", services.len()),
    )
}

/// One table's kube-proxy state: its name, its KUBE-* chains, and the rules of its
/// built-in chains that jump to them (as `iptables-save` prints them).
type TableState = (String, Vec<String>, Vec<String>);

/// The kube-proxy state of namespace `netns`, per table that has any.
fn kube_state(ipt: Iptables, netns: &str) -> Result<Vec<TableState>> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, ipt.save()])
        .output()
        .with_context(|| format!("run {} (Debian package iptables)", ipt.save()))?;
    if !out.status.success() {
        bail!(
            "{} in {netns}: {}",
            ipt.save(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut tables = Vec::new();
    let mut current: Option<TableState> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(t) = line.strip_prefix('*') {
            current = Some((t.to_string(), Vec::new(), Vec::new()));
        } else if line == "COMMIT" {
            tables.extend(current.take());
        } else if let Some((_, chains, jumps)) = current.as_mut() {
            if let Some(c) = line.strip_prefix(":KUBE-") {
                chains.push(format!(
                    "KUBE-{}",
                    c.split_whitespace().next().unwrap_or("")
                ));
            } else if line.starts_with("-A ")
                && !line.starts_with("-A KUBE-")
                && line.contains(" -j KUBE-")
            {
                jumps.push(line.to_string());
            }
        }
    }
    Ok(tables
        .into_iter()
        .filter(|(_, c, j)| !c.is_empty() || !j.is_empty())
        .collect())
}

/// Removes every kube-proxy rule and chain from namespace `netns` (what `kube-proxy
/// --cleanup` does): the built-in chains' jumps, then the KUBE-* chains. Other rules
/// stay. Nothing to do when none are there.
pub fn unload(ipt: Iptables, netns: &str) -> Result<()> {
    let state = kube_state(ipt, netns)?;
    if state.is_empty() {
        return Ok(());
    }
    let mut input = String::new();
    for (table, chains, jumps) in state {
        input.push_str(&format!("*{table}\n"));
        for j in jumps {
            input.push_str(&format!("-D{}\n", &j[2..]));
        }
        for c in &chains {
            input.push_str(&format!("-F {c}\n"));
        }
        for c in &chains {
            input.push_str(&format!("-X {c}\n"));
        }
        input.push_str("COMMIT\n");
    }
    restore(ipt, netns, &input, "remove the kube-proxy rules")
}

/// Whether namespace `netns` holds any kube-proxy chain or jump.
pub fn loaded(ipt: Iptables, netns: &str) -> Result<bool> {
    Ok(!kube_state(ipt, netns)?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, ip: [u8; 4], eps: &[([u8; 4], u16)]) -> ServicePort {
        ServicePort {
            name: name.into(),
            cluster_ip: Ipv4Addr::from(ip),
            port: 80,
            endpoints: eps
                .iter()
                .map(|(a, p)| SocketAddrV4::new(Ipv4Addr::from(*a), *p))
                .collect(),
        }
    }

    #[test]
    fn chain_names_are_kube_proxy_shaped_and_stable() {
        let s = port("ns/a:http", [10, 96, 0, 1], &[([10, 250, 1, 2], 8080)]);
        let svc = s.svc_chain();
        assert_eq!(svc.len(), "KUBE-SVC-".len() + 16);
        assert!(svc[9..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
        assert_eq!(svc, s.clone().svc_chain());
        assert_ne!(
            svc,
            port("ns/b:http", [10, 96, 0, 1], &[]).svc_chain(),
            "another Service, another chain"
        );
        // iptables allows chain names of up to 28 characters.
        assert!(s.sep_chain(&s.endpoints[0]).len() <= 28);
        // base32(SHA-256("")), as Python's base64.b32encode gives it.
        assert_eq!(hash16(""), "4OYMIQUY7QOBJGX3");
    }

    #[test]
    fn services_walk_in_order_then_probability_jumps_then_dnat() {
        let a = port(
            "ns/a:http",
            [10, 96, 0, 1],
            &[
                ([10, 250, 1, 2], 8080),
                ([10, 250, 2, 2], 8080),
                ([10, 250, 3, 2], 8080),
            ],
        );
        let b = port("ns/b:http", [10, 96, 0, 2], &[([10, 250, 1, 9], 80)]);
        let text = restore_input(&[a.clone(), b.clone()], "10.250.0.0/16");
        let svc_lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES"))
            .collect();
        assert_eq!(svc_lines.len(), 3, "{text}");
        assert!(svc_lines[0].contains("-d 10.96.0.1/32 --dport 80 -j KUBE-SVC-"));
        assert!(svc_lines[1].contains("-d 10.96.0.2/32"));
        assert!(
            svc_lines[2].ends_with("-j KUBE-NODEPORTS"),
            "nodeports last"
        );
        let in_a: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("-A {} ", a.svc_chain())))
            .collect();
        assert_eq!(in_a.len(), 4, "{in_a:#?}");
        assert!(in_a[0].contains("! -s 10.250.0.0/16 -j KUBE-MARK-MASQ"));
        assert!(in_a[1].contains("--probability 0.3333333333"));
        assert!(in_a[2].contains("--probability 0.5000000000"));
        assert!(!in_a[3].contains("statistic") && in_a[3].contains("-j KUBE-SEP-"));
        let sep = a.sep_chain(&a.endpoints[2]);
        assert!(text.contains(&format!(
            "-A {sep} -m comment --comment \"ns/a:http\" -s 10.250.3.2/32 -j KUBE-MARK-MASQ\n"
        )));
        assert!(text.contains(&format!(
            "-A {sep} -m comment --comment \"ns/a:http\" -m tcp -p tcp -j DNAT --to-destination 10.250.3.2:8080\n"
        )));
        // Every chain jumped to is declared.
        for l in text.lines().filter(|l| l.contains("-j KUBE-")) {
            let target = l.rsplit("-j ").next().unwrap().split(' ').next().unwrap();
            assert!(text.contains(&format!(":{target} - [0:0]")), "{target}");
        }
        assert_eq!(text.matches("COMMIT").count(), 2);
    }

    #[test]
    fn objects_give_ready_endpoints_of_the_named_port() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ]}
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.250.1.5"], "conditions": {"ready": true}},
                {"addresses": ["10.250.1.6"], "conditions": {"ready": false}},
                {"addresses": ["10.250.2.5"]}
            ]
        }))
        .unwrap();
        let other: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db-1", "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 9}],
            "endpoints": [{"addresses": ["10.250.9.9"]}]
        }))
        .unwrap();
        let got = from_objects(&[svc], &[slice, other]);
        assert_eq!(
            got,
            [port(
                "shop/web:http",
                [10, 96, 0, 10],
                &[([10, 250, 1, 5], 8080), ([10, 250, 2, 5], 8080)]
            )]
        );
    }
}

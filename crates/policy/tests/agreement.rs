//! The compiled form against the reference evaluator: random clusters and policies, random
//! flows, both must decide every flow the same way; and the longest-prefix-match view of
//! the compiled lists (what the eBPF maps will hold) must decide like the flat lists.
//! Deterministic: a fixed seed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use unicni_policy::compile::{lpm_lookup, subtract};
use unicni_policy::model::{IpBlock, NamedPort, Namespace, Peer, PortMatch, PortSpec, Rule};
use unicni_policy::selector::{Operator, Requirement};
use unicni_policy::{
    compile, evaluate, Direction, Pod, Policy, PortRange, Protocol, Selector, Snapshot, Verdict,
};

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const NAMESPACES: &[&str] = &["a", "b", "c"];
const KEYS: &[&str] = &["app", "tier", "env"];
const VALUES: &[&str] = &["x", "y", "z"];
const PORT_NAMES: &[&str] = &["http", "dns", "metrics", "none"];
const PROTOCOLS: &[Protocol] = &[Protocol::Tcp, Protocol::Udp, Protocol::Sctp];
const PORTS: &[u16] = &[53, 80, 443, 8080, 9090];

fn labels(rng: &mut Rng) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for key in KEYS {
        if rng.chance(60) {
            labels.insert(key.to_string(), rng.pick(VALUES).to_string());
        }
    }
    labels
}

fn selector(rng: &mut Rng) -> Selector {
    let mut requirements = Vec::new();
    for _ in 0..rng.below(3) {
        let key = rng.pick(KEYS).to_string();
        let mut set = BTreeSet::new();
        set.insert(rng.pick(VALUES).to_string());
        if rng.chance(30) {
            set.insert(rng.pick(VALUES).to_string());
        }
        let operator = match rng.below(4) {
            0 => Operator::In(set),
            1 => Operator::NotIn(set),
            2 => Operator::Exists,
            _ => Operator::DoesNotExist,
        };
        requirements.push(Requirement { key, operator });
    }
    Selector { requirements }
}

/// Pod addresses are 10.0.<ns>.<n> and fd00::<ns>:<n>; other addresses come from the same
/// ranges (unused hosts) and from outside them.
fn pod(rng: &mut Rng, index: usize) -> Pod {
    let ns = rng.below(NAMESPACES.len());
    let v4: IpAddr = format!("10.0.{ns}.{}", index + 1).parse().unwrap();
    let v6: IpAddr = format!("fd00::{ns}:{}", index + 1).parse().unwrap();
    let ips = match rng.below(10) {
        0 => vec![],
        1 | 2 => vec![v4, v6],
        3 => vec![v6],
        _ => vec![v4],
    };
    let mut ports = Vec::new();
    for name in PORT_NAMES {
        if *name != "none" && rng.chance(40) {
            ports.push(NamedPort {
                name: name.to_string(),
                protocol: *rng.pick(PROTOCOLS),
                port: *rng.pick(PORTS),
            });
        }
    }
    Pod {
        namespace: NAMESPACES[ns].to_string(),
        name: format!("p{index}"),
        labels: labels(rng),
        ips,
        ports,
        node: None,
        host_network: rng.chance(5),
    }
}

fn cidr(rng: &mut Rng) -> IpNet {
    let v4 = [
        "10.0.0.0/8",
        "10.0.0.0/16",
        "10.0.1.0/24",
        "10.0.0.0/23",
        "0.0.0.0/0",
        "192.168.0.0/16",
        "10.0.2.0/25",
    ];
    let v6 = ["fd00::/16", "fd00::1:0/112", "::/0"];
    let text = if rng.chance(75) {
        rng.pick(&v4)
    } else {
        rng.pick(&v6)
    };
    text.parse().unwrap()
}

fn ip_block(rng: &mut Rng) -> IpBlock {
    let cidr = cidr(rng);
    let mut except = Vec::new();
    for _ in 0..rng.below(3) {
        // A random strictly smaller network inside the cidr.
        let max = cidr.max_prefix_len();
        let len = cidr.prefix_len() + 1 + rng.below(usize::from(max - cidr.prefix_len())) as u8;
        let host = match cidr.network() {
            IpAddr::V4(a) => {
                let span = u32::MAX
                    .checked_shr(u32::from(cidr.prefix_len()))
                    .unwrap_or(0);
                IpAddr::from(Ipv4Addr::from(
                    u32::from(a) | (rng.next() as u32 & span & 0x0000_03ff),
                ))
            }
            IpAddr::V6(a) => {
                let span = u128::MAX
                    .checked_shr(u32::from(cidr.prefix_len()))
                    .unwrap_or(0);
                IpAddr::from(Ipv6Addr::from(
                    u128::from(a) | (u128::from(rng.next() as u32) & span & 0x3_ffff),
                ))
            }
        };
        except.push(IpNet::new(host, len).unwrap().trunc());
    }
    IpBlock { cidr, except }
}

fn peer(rng: &mut Rng) -> Peer {
    match rng.below(5) {
        0 => Peer::IpBlock(ip_block(rng)),
        1 => Peer::Pods {
            namespaces: None,
            pods: selector(rng),
        },
        2 => Peer::Pods {
            namespaces: Some(selector(rng)),
            pods: Selector::everything(),
        },
        _ => Peer::Pods {
            namespaces: Some(selector(rng)),
            pods: selector(rng),
        },
    }
}

fn port_spec(rng: &mut Rng) -> PortSpec {
    let protocol = *rng.pick(PROTOCOLS);
    let port = match rng.below(4) {
        0 => PortMatch::All,
        1 => PortMatch::Range(PortRange::single(*rng.pick(PORTS))),
        2 => {
            let first = *rng.pick(PORTS);
            PortMatch::Range(PortRange {
                first,
                last: first + rng.below(9000) as u16,
            })
        }
        _ => PortMatch::Named(rng.pick(PORT_NAMES).to_string()),
    };
    PortSpec { protocol, port }
}

fn rules(rng: &mut Rng) -> Vec<Rule> {
    (0..rng.below(3))
        .map(|_| Rule {
            peers: (0..rng.below(3)).map(|_| peer(rng)).collect(),
            ports: (0..rng.below(3)).map(|_| port_spec(rng)).collect(),
        })
        .collect()
}

fn policy(rng: &mut Rng, index: usize) -> Policy {
    let (ingress, egress) = match rng.below(3) {
        0 => (true, false),
        1 => (false, true),
        _ => (true, true),
    };
    Policy {
        namespace: rng.pick(NAMESPACES).to_string(),
        name: format!("np{index}"),
        pod_selector: selector(rng),
        ingress: ingress.then(|| rules(rng)),
        egress: egress.then(|| rules(rng)),
    }
}

fn snapshot(rng: &mut Rng) -> Snapshot {
    let mut s = Snapshot::default();
    for ns in NAMESPACES {
        if rng.chance(80) {
            s.namespaces.insert(
                ns.to_string(),
                Namespace {
                    name: ns.to_string(),
                    labels: labels(rng),
                },
            );
        }
    }
    s.pods = (0..4 + rng.below(10)).map(|i| pod(rng, i)).collect();
    s.policies = (0..rng.below(5)).map(|i| policy(rng, i)).collect();
    s
}

fn address(rng: &mut Rng, s: &Snapshot, v6: bool) -> IpAddr {
    let pod_ips: Vec<IpAddr> = s
        .pods
        .iter()
        .flat_map(|p| p.ips.iter().copied())
        .filter(|ip| ip.is_ipv6() == v6)
        .collect();
    if !pod_ips.is_empty() && rng.chance(70) {
        return *rng.pick(&pod_ips);
    }
    let n = rng.next();
    if v6 {
        let prefix: u128 = if n.is_multiple_of(2) {
            0xfd00 << 112
        } else {
            0x2001_0db8 << 96
        };
        IpAddr::from(Ipv6Addr::from(
            prefix | u128::from((n >> 8) as u32 & 0x3_ffff),
        ))
    } else {
        let prefix: u32 = match n % 3 {
            0 => 0x0a00_0000,
            1 => 0xc0a8_0000,
            _ => 0x0808_0000,
        };
        IpAddr::from(Ipv4Addr::from(prefix | ((n >> 8) as u32 & 0x0000_03ff)))
    }
}

/// Often one of the destination pod's named ports, so named port rules get exercised.
fn flow_port(rng: &mut Rng, s: &Snapshot, dst: IpAddr) -> (Protocol, u16) {
    let named = s
        .pod_by_ip(dst)
        .map(|p| p.ports.as_slice())
        .unwrap_or_default();
    if !named.is_empty() && rng.chance(50) {
        let port = rng.pick(named);
        return (port.protocol, port.port);
    }
    let protocol = match rng.below(10) {
        0 => Protocol::Other(1),
        n => PROTOCOLS[n % 3],
    };
    let port = match protocol {
        Protocol::Other(_) => 0,
        _ if rng.chance(70) => *rng.pick(PORTS),
        _ => rng.next() as u16,
    };
    (protocol, port)
}

fn lpm_allows(
    rules: &unicni_policy::DirectionRules,
    remote: IpAddr,
    p: Protocol,
    port: u16,
) -> bool {
    if !rules.isolated {
        return true;
    }
    let entries = rules.lpm_entries();
    lpm_lookup(&entries, remote).is_some_and(|e| e.allows(p, port))
}

#[test]
fn compiled_agrees_with_evaluate() {
    let mut rng = Rng(0x5eed_0f90_11c1);
    let (mut allowed, mut denied, mut flows) = (0, 0, 0);
    for round in 0..400 {
        let s = snapshot(&mut rng);
        let compiled = compile(&s);
        for _ in 0..250 {
            let v6 = rng.chance(25);
            let src = address(&mut rng, &s, v6);
            let dst = address(&mut rng, &s, v6);
            let (protocol, port) = flow_port(&mut rng, &s, dst);
            let reference = evaluate(&s, src, dst, protocol, port);
            let got = compiled.verdict(src, dst, protocol, port);
            assert_eq!(
                reference, got,
                "round {round}: {src} -> {dst} {protocol}/{port}\nsnapshot: {s:#?}\ncompiled: {compiled:#?}"
            );

            // The LPM view of each local end decides like its flat list.
            for (local, remote, direction) in [
                (src, dst, Direction::Egress),
                (dst, src, Direction::Ingress),
            ] {
                if let Some(pod) = compiled.pods.get(&local) {
                    let rules = pod.direction(direction);
                    assert_eq!(
                        rules.allows(remote, protocol, port),
                        lpm_allows(rules, remote, protocol, port),
                        "round {round}: LPM view of {local} {direction}, remote {remote} {protocol}/{port}: {rules:#?}"
                    );
                }
            }

            flows += 1;
            match reference {
                Verdict::Allow => allowed += 1,
                Verdict::Deny(_) => denied += 1,
            }
        }
    }
    eprintln!("{flows} flows: {allowed} allowed, {denied} denied");
    // The generator must exercise both outcomes in earnest.
    assert!(allowed > flows / 10, "{allowed} of {flows} allowed");
    assert!(denied > flows / 10, "{denied} of {flows} denied");
}

#[test]
fn subtract_matches_ip_block_contains() {
    let mut rng = Rng(7);
    for _ in 0..300 {
        let block = ip_block(&mut rng);
        let pieces = subtract(block.cidr, &block.except);
        for w in pieces.windows(2) {
            assert!(
                !w[0].contains(&w[1]) && !w[1].contains(&w[0]),
                "overlap: {pieces:?}"
            );
        }
        for _ in 0..200 {
            let ip = address(&mut rng, &Snapshot::default(), block.cidr.addr().is_ipv6());
            let near = match (block.except.first(), rng.chance(50)) {
                (Some(e), true) => e.network(),
                _ => ip,
            };
            for ip in [ip, near] {
                assert_eq!(
                    block.contains(ip),
                    pieces.iter().any(|p| p.contains(&ip)),
                    "{ip} in {block:?} as {pieces:?}"
                );
            }
        }
    }
}

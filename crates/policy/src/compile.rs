//! The compiled form: for each local pod address and each direction, whether the pod is
//! isolated and a flat list of allow entries {remote CIDR or any, protocol or any, port
//! range}. Everything that needs the cluster's state is resolved here: pod selectors become
//! the selected pods' addresses (/32, /128), ipBlocks become CIDRs with their excepts cut out
//! (non-overlapping pieces), named ports become the number they have on the destination pod.
//! A flow is then decided by address, protocol and port alone, which is what a datapath can
//! look up per packet. [`Compiled::verdict`] must agree with [`crate::evaluate::evaluate`].
//!
//! # Mapping onto eBPF maps
//!
//! [`DirectionRules::lpm_entries`] turns a direction's list into longest-prefix-match form:
//! one entry per distinct remote prefix (`any` is `0.0.0.0/0` and `::/0`), each carrying the
//! (protocol, ports) of every entry whose remote contains that prefix. Because of that
//! folding, the single longest match for the remote address decides, which is exactly what a
//! `BPF_MAP_TYPE_LPM_TRIE` lookup returns. The maps, per address family and direction:
//!
//! - `policy_isolated` (hash): key local pod address → bits {ingress, egress}. Absent: the
//!   pod is not isolated, the packet passes.
//! - `policy_v4_{ingress,egress}` (LPM trie): key `{prefixlen, local addr (4 bytes), remote
//!   addr (4 bytes)}` with `prefixlen = 32 + remote prefix length` (the local address is always
//!   matched whole); value `{port set id: u32, flags: u32}` with a flag for "any protocol,
//!   any port". `policy_v6_*` the same with 16-byte addresses (`prefixlen = 128 + …`).
//!   No match: drop.
//! - `policy_ports` (LPM trie, shared): key `{prefixlen, port set id: u32, protocol: u8,
//!   pad: u8 (0), port: u16 big endian}`, `prefixlen = 48 + port prefix length`; a port range
//!   is stored as the aligned blocks of [`port_prefixes`]. Identical port sets share an id.
//!   A match allows the packet, no match drops it.
//!
//! The local address is the packet's source for egress and its destination for ingress.
//! Replies of allowed connections pass on a connection-tracking entry before any of this.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::evaluate::Verdict;
use crate::model::{
    Direction, Peer, Pod, PortMatch, PortRange, PortSpec, Protocol, Rule, Snapshot,
};
use crate::selector::{Labels, Selector};

/// The other end of a flow in an allow entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Remote {
    Any,
    Net(IpNet),
}

impl Remote {
    pub fn contains(self, ip: IpAddr) -> bool {
        match self {
            Remote::Any => true,
            Remote::Net(net) => net.contains(&ip),
        }
    }
}

/// One allowed (remote, protocol, destination ports) combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllowEntry {
    pub remote: Remote,
    /// `None`: any protocol (and then `ports` is [`PortRange::ALL`]).
    pub protocol: Option<Protocol>,
    /// Destination ports.
    pub ports: PortRange,
}

impl AllowEntry {
    pub fn matches(&self, remote: IpAddr, protocol: Protocol, port: u16) -> bool {
        self.remote.contains(remote)
            && self.protocol.is_none_or(|p| p == protocol)
            && self.ports.contains(port)
    }
}

/// One direction of one local pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectionRules {
    /// Selected by at least one policy for this direction: what `allow` does not match is
    /// dropped. When false, `allow` is empty and everything passes.
    pub isolated: bool,
    /// Sorted, without duplicates.
    pub allow: Vec<AllowEntry>,
}

impl DirectionRules {
    pub fn allows(&self, remote: IpAddr, protocol: Protocol, port: u16) -> bool {
        !self.isolated || self.allow.iter().any(|e| e.matches(remote, protocol, port))
    }

    /// The longest-prefix-match form (see the module documentation), sorted by prefix.
    pub fn lpm_entries(&self) -> Vec<LpmEntry> {
        let mut prefixes = BTreeSet::new();
        for entry in &self.allow {
            match entry.remote {
                Remote::Net(net) => {
                    prefixes.insert(net);
                }
                Remote::Any => {
                    prefixes.insert(everything(Ipv4Addr::UNSPECIFIED.into()));
                    prefixes.insert(everything(Ipv6Addr::UNSPECIFIED.into()));
                }
            }
        }
        prefixes
            .into_iter()
            .map(|prefix| {
                let ports: BTreeSet<_> = self
                    .allow
                    .iter()
                    .filter(|e| match e.remote {
                        Remote::Any => true,
                        Remote::Net(net) => net.contains(&prefix),
                    })
                    .map(|e| (e.protocol, e.ports))
                    .collect();
                LpmEntry {
                    prefix,
                    ports: ports.into_iter().collect(),
                }
            })
            .collect()
    }
}

/// One entry of the remote-address LPM trie with the (protocol, ports) it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LpmEntry {
    pub prefix: IpNet,
    /// `(None, ALL)` is "any protocol, any port".
    pub ports: Vec<(Option<Protocol>, PortRange)>,
}

impl LpmEntry {
    pub fn allows(&self, protocol: Protocol, port: u16) -> bool {
        self.ports
            .iter()
            .any(|(p, range)| p.is_none_or(|p| p == protocol) && range.contains(port))
    }
}

/// What an LPM trie returns for `remote`: the entry with the longest prefix containing it.
pub fn lpm_lookup(entries: &[LpmEntry], remote: IpAddr) -> Option<&LpmEntry> {
    entries
        .iter()
        .filter(|e| e.prefix.contains(&remote))
        .max_by_key(|e| e.prefix.prefix_len())
}

/// `0.0.0.0/0` or `::/0`.
fn everything(unspecified: IpAddr) -> IpNet {
    IpNet::new(unspecified, 0).expect("prefix 0 is valid")
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRules {
    /// `namespace/name`, for logs.
    pub pod: String,
    pub ingress: DirectionRules,
    pub egress: DirectionRules,
}

impl PodRules {
    pub fn direction(&self, direction: Direction) -> &DirectionRules {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// The compiled policies of a set of local pods, by pod address (a dual-stack pod appears
/// under both of its addresses with the same rules).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compiled {
    pub pods: BTreeMap<IpAddr, PodRules>,
}

impl Compiled {
    /// The decision for a flow, from the local ends' rules only: the source's egress if the
    /// source is local, the destination's ingress if the destination is local. Over a
    /// snapshot compiled whole it equals [`crate::evaluate::evaluate`].
    pub fn verdict(&self, src: IpAddr, dst: IpAddr, protocol: Protocol, dst_port: u16) -> Verdict {
        if let Some(rules) = self.pods.get(&src) {
            if !rules.egress.allows(dst, protocol, dst_port) {
                return Verdict::Deny(Direction::Egress);
            }
        }
        if let Some(rules) = self.pods.get(&dst) {
            if !rules.ingress.allows(src, protocol, dst_port) {
                return Verdict::Deny(Direction::Ingress);
            }
        }
        Verdict::Allow
    }
}

/// Compiles for every pod-network pod of the snapshot.
pub fn compile(snapshot: &Snapshot) -> Compiled {
    compile_where(snapshot, |_| true)
}

/// Compiles for the pod-network pods `local` accepts (a node's own pods, say:
/// `|p| p.node.as_deref() == Some(node)`); peers are still resolved over the whole snapshot.
pub fn compile_where(snapshot: &Snapshot, local: impl Fn(&Pod) -> bool) -> Compiled {
    let compiler = Compiler::new(snapshot);
    let mut compiled = Compiled::default();
    for pod in snapshot.network_pods().filter(|p| local(p)) {
        if pod.ips.is_empty() {
            continue;
        }
        let rules = PodRules {
            pod: format!("{}/{}", pod.namespace, pod.name),
            ingress: compiler.direction(pod, Direction::Ingress),
            egress: compiler.direction(pod, Direction::Egress),
        };
        for ip in &pod.ips {
            compiled.pods.insert(*ip, rules.clone());
        }
    }
    compiled
}

struct Compiler<'a> {
    snapshot: &'a Snapshot,
    /// Labels of every namespace a pod is in, looked up once.
    namespace_labels: HashMap<&'a str, Labels>,
}

impl<'a> Compiler<'a> {
    fn new(snapshot: &'a Snapshot) -> Self {
        let namespace_labels = snapshot
            .network_pods()
            .map(|p| {
                (
                    p.namespace.as_str(),
                    snapshot.namespace_labels(&p.namespace),
                )
            })
            .collect();
        Self {
            snapshot,
            namespace_labels,
        }
    }

    fn direction(&self, pod: &Pod, direction: Direction) -> DirectionRules {
        let mut isolated = false;
        let mut allow = BTreeSet::new();
        for (policy, rules) in self.snapshot.rules_for(pod, direction) {
            isolated = true;
            for rule in rules {
                self.rule(&policy.namespace, rule, pod, direction, &mut allow);
            }
        }
        DirectionRules {
            isolated,
            allow: allow.into_iter().collect(),
        }
    }

    fn rule(
        &self,
        policy_namespace: &str,
        rule: &Rule,
        local: &Pod,
        direction: Direction,
        out: &mut BTreeSet<AllowEntry>,
    ) {
        let remotes = self.remotes(policy_namespace, rule);
        let mut add = |remote: Remote, ports: &[(Option<Protocol>, PortRange)]| {
            for &(protocol, ports) in ports {
                out.insert(AllowEntry {
                    remote,
                    protocol,
                    ports,
                });
            }
        };
        if rule.ports.is_empty() {
            for &remote in &remotes {
                add(remote, &[(None, PortRange::ALL)]);
            }
            return;
        }
        match direction {
            // The local pod is the destination: named ports resolve on it.
            Direction::Ingress => {
                let ports = port_entries(&rule.ports, Some(local));
                for &remote in &remotes {
                    add(remote, &ports);
                }
            }
            // The remote is the destination: numbers apply to every remote, names to each
            // destination pod with its own number.
            Direction::Egress => {
                let (named, numbered): (Vec<PortSpec>, Vec<PortSpec>) = rule
                    .ports
                    .iter()
                    .cloned()
                    .partition(|p| matches!(p.port, PortMatch::Named(_)));
                let ports = port_entries(&numbered, None);
                for &remote in &remotes {
                    add(remote, &ports);
                }
                if !named.is_empty() {
                    for (ip, pod) in self.destination_pods(policy_namespace, rule) {
                        add(
                            Remote::Net(IpNet::from(ip)),
                            &port_entries(&named, Some(pod)),
                        );
                    }
                }
            }
        }
    }

    /// The remotes a rule's peers cover.
    fn remotes(&self, policy_namespace: &str, rule: &Rule) -> Vec<Remote> {
        if rule.peers.is_empty() {
            return vec![Remote::Any];
        }
        let mut remotes = Vec::new();
        for peer in &rule.peers {
            match peer {
                Peer::IpBlock(block) => remotes.extend(
                    subtract(block.cidr, &block.except)
                        .into_iter()
                        .map(Remote::Net),
                ),
                Peer::Pods { namespaces, pods } => remotes.extend(
                    self.selected(policy_namespace, namespaces.as_ref(), pods)
                        .flat_map(|p| p.ips.iter().map(|ip| Remote::Net(IpNet::from(*ip)))),
                ),
            }
        }
        remotes
    }

    /// The pod addresses a rule's peers cover, with their pods (for named ports).
    fn destination_pods(&self, policy_namespace: &str, rule: &Rule) -> Vec<(IpAddr, &'a Pod)> {
        let all = || {
            self.snapshot
                .network_pods()
                .flat_map(|p| p.ips.iter().map(move |ip| (*ip, p)))
        };
        if rule.peers.is_empty() {
            return all().collect();
        }
        let mut out = Vec::new();
        for peer in &rule.peers {
            match peer {
                Peer::IpBlock(block) => out.extend(all().filter(|(ip, _)| block.contains(*ip))),
                Peer::Pods { namespaces, pods } => out.extend(
                    self.selected(policy_namespace, namespaces.as_ref(), pods)
                        .flat_map(|p| p.ips.iter().map(move |ip| (*ip, p))),
                ),
            }
        }
        out
    }

    fn selected<'s>(
        &'s self,
        policy_namespace: &'s str,
        namespaces: Option<&'s Selector>,
        pods: &'s Selector,
    ) -> impl Iterator<Item = &'a Pod> + 's {
        self.snapshot.network_pods().filter(move |p| {
            let namespace_ok = match namespaces {
                None => p.namespace == policy_namespace,
                Some(selector) => selector.matches(&self.namespace_labels[p.namespace.as_str()]),
            };
            namespace_ok && pods.matches(&p.labels)
        })
    }
}

/// The (protocol, ports) of port specs; named ports resolve on `dst` and vanish when it
/// has no such port (or is not known).
fn port_entries(specs: &[PortSpec], dst: Option<&Pod>) -> Vec<(Option<Protocol>, PortRange)> {
    specs
        .iter()
        .filter_map(|spec| {
            let ports = match &spec.port {
                PortMatch::All => PortRange::ALL,
                PortMatch::Range(range) => *range,
                PortMatch::Named(name) => PortRange::single(dst?.named_port(name, spec.protocol)?),
            };
            Some((Some(spec.protocol), ports))
        })
        .collect()
}

/// `net` without the `except` networks, as non-overlapping CIDRs (sorted). Each except
/// inside a piece splits it into the halves down to the except, keeping the halves that do
/// not contain it.
pub fn subtract(net: IpNet, except: &[IpNet]) -> Vec<IpNet> {
    let mut pieces = vec![net];
    for &cut in except {
        let mut next = Vec::new();
        for piece in pieces {
            if cut.contains(&piece) {
                continue;
            }
            if !piece.contains(&cut) {
                next.push(piece);
                continue;
            }
            let mut rest = piece;
            while rest.prefix_len() < cut.prefix_len() {
                let halves = rest
                    .subnets(rest.prefix_len() + 1)
                    .expect("prefix below the maximum");
                for half in halves {
                    if half.contains(&cut) {
                        rest = half;
                    } else {
                        next.push(half);
                    }
                }
            }
        }
        pieces = next;
    }
    pieces.sort();
    pieces
}

/// A port range as aligned power-of-two blocks `(first port, prefix length over 16 bits)`,
/// the keys an LPM trie over ports needs: `80..=81` is `[(80, 15)]`, `ALL` is `[(0, 0)]`.
pub fn port_prefixes(range: PortRange) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    let (mut start, last) = (u32::from(range.first), u32::from(range.last));
    while start <= last {
        // The largest block aligned at `start` that ends within the range.
        let mut size = if start == 0 {
            1 << 16
        } else {
            1 << start.trailing_zeros()
        };
        while start + size - 1 > last {
            size >>= 1;
        }
        out.push((start as u16, 16 - size.trailing_zeros() as u8));
        start += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn subtract_splits_around_excepts() {
        assert_eq!(
            subtract(net("10.0.0.0/24"), &[net("10.0.0.128/25")]),
            vec![net("10.0.0.0/25")]
        );
        assert_eq!(
            subtract(net("10.0.0.0/24"), &[net("10.0.0.5/32")]),
            vec![
                net("10.0.0.0/30"),
                net("10.0.0.4/32"),
                net("10.0.0.6/31"),
                net("10.0.0.8/29"),
                net("10.0.0.16/28"),
                net("10.0.0.32/27"),
                net("10.0.0.64/26"),
                net("10.0.0.128/25"),
            ]
        );
        // Nested and overlapping excepts.
        let pieces = subtract(
            net("172.17.0.0/16"),
            &[
                net("172.17.1.0/24"),
                net("172.17.1.128/25"),
                net("172.17.0.0/17"),
            ],
        );
        assert_eq!(pieces, vec![net("172.17.128.0/17")]);
        assert_eq!(subtract(net("::/0"), &[]), vec![net("::/0")]);
    }

    #[test]
    fn subtract_covers_exactly_the_block() {
        let block = net("10.1.0.0/20");
        let except = [net("10.1.3.0/24"), net("10.1.8.17/32"), net("10.1.12.0/22")];
        let pieces = subtract(block, &except);
        for a in 0u32..(1 << 12) {
            let ip = IpAddr::from(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + a));
            let inside = !except.iter().any(|e| e.contains(&ip));
            let hits = pieces.iter().filter(|p| p.contains(&ip)).count();
            assert_eq!(hits, usize::from(inside), "{ip}");
        }
    }

    #[test]
    fn port_prefixes_are_aligned_blocks() {
        assert_eq!(port_prefixes(PortRange::ALL), vec![(0, 0)]);
        assert_eq!(port_prefixes(PortRange::single(53)), vec![(53, 16)]);
        assert_eq!(
            port_prefixes(PortRange {
                first: 32000,
                last: 32768
            }),
            vec![(32000, 8), (32256, 7), (32768, 16)]
        );
        for (first, last) in [(1, 65535), (7, 9), (1000, 1999), (65535, 65535)] {
            let blocks = port_prefixes(PortRange { first, last });
            let covered: u32 = blocks.iter().map(|(_, len)| 1u32 << (16 - len)).sum();
            assert_eq!(covered, u32::from(last - first) + 1);
            for (start, len) in blocks {
                assert_eq!(u32::from(start) % (1 << (16 - len)), 0, "aligned");
            }
        }
    }
}

//! The reference semantics: one flow decided straight from the policies, the way the
//! NetworkPolicy API describes it. Slow (it walks every policy, peer and pod) and simple on
//! purpose; the compiled form ([`crate::compile::compile`]) must always agree with it.
//!
//! A flow from `src` to `dst` passes when both ends let it:
//! - egress at `src`, when `src` is a pod on the pod network: if no policy selects the pod
//!   for egress it is not isolated and everything goes; otherwise the flow must match a rule
//!   of one of those policies (the union), with `dst` as the peer;
//! - ingress at `dst`, likewise with `src` as the peer.
//!
//! A rule matches when a peer matches (any peer if the rule has none) and a port matches (any
//! port if it has none). A pod peer matches a pod-network pod by its labels and namespace; an
//! ipBlock matches any address in its CIDR outside the excepts, pod or not. A port matches the
//! protocol and the destination port; a named port is resolved on the destination pod (the
//! container port with that name and protocol), so it never matches a destination that is not
//! a pod.
//!
//! Left to the datapath: replies of allowed connections (connection tracking) and traffic
//! from the node to its own pods (probes) are allowed whatever the policies say.

use std::net::IpAddr;

use crate::model::{Direction, Peer, Pod, PortMatch, PortSpec, Protocol, Rule, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Dropped by the policies of the source (egress) or of the destination (ingress);
    /// egress is reported when both would drop.
    Deny(Direction),
}

impl Verdict {
    pub fn is_allowed(self) -> bool {
        self == Verdict::Allow
    }
}

/// Decides the flow `src` → `dst`:`dst_port` over `protocol` (port 0 for protocols
/// without ports).
pub fn evaluate(
    snapshot: &Snapshot,
    src: IpAddr,
    dst: IpAddr,
    protocol: Protocol,
    dst_port: u16,
) -> Verdict {
    let src_pod = snapshot.pod_by_ip(src);
    let dst_pod = snapshot.pod_by_ip(dst);
    let flow = Flow {
        protocol,
        port: dst_port,
        dst_pod,
    };
    if let Some(pod) = src_pod {
        if !allowed(snapshot, pod, Direction::Egress, dst, dst_pod, &flow) {
            return Verdict::Deny(Direction::Egress);
        }
    }
    if let Some(pod) = dst_pod {
        if !allowed(snapshot, pod, Direction::Ingress, src, src_pod, &flow) {
            return Verdict::Deny(Direction::Ingress);
        }
    }
    Verdict::Allow
}

struct Flow<'a> {
    protocol: Protocol,
    port: u16,
    /// Where named ports are looked up.
    dst_pod: Option<&'a Pod>,
}

/// Whether `pod`'s policies for `direction` let the flow through, `peer` being the other end.
fn allowed(
    snapshot: &Snapshot,
    pod: &Pod,
    direction: Direction,
    peer: IpAddr,
    peer_pod: Option<&Pod>,
    flow: &Flow,
) -> bool {
    let mut isolated = false;
    for (policy, rules) in snapshot.rules_for(pod, direction) {
        isolated = true;
        let matched = rules
            .iter()
            .any(|rule| rule_matches(snapshot, &policy.namespace, rule, peer, peer_pod, flow));
        if matched {
            return true;
        }
    }
    !isolated
}

fn rule_matches(
    snapshot: &Snapshot,
    policy_namespace: &str,
    rule: &Rule,
    peer: IpAddr,
    peer_pod: Option<&Pod>,
    flow: &Flow,
) -> bool {
    let peer_ok = rule.peers.is_empty()
        || rule
            .peers
            .iter()
            .any(|p| peer_matches(snapshot, policy_namespace, p, peer, peer_pod));
    let port_ok = rule.ports.is_empty() || rule.ports.iter().any(|p| port_matches(p, flow));
    peer_ok && port_ok
}

fn peer_matches(
    snapshot: &Snapshot,
    policy_namespace: &str,
    peer: &Peer,
    ip: IpAddr,
    pod: Option<&Pod>,
) -> bool {
    match peer {
        Peer::IpBlock(block) => block.contains(ip),
        Peer::Pods { namespaces, pods } => {
            let Some(pod) = pod else { return false };
            let namespace_ok = match namespaces {
                None => pod.namespace == policy_namespace,
                Some(selector) => selector.matches(&snapshot.namespace_labels(&pod.namespace)),
            };
            namespace_ok && pods.matches(&pod.labels)
        }
    }
}

fn port_matches(spec: &PortSpec, flow: &Flow) -> bool {
    if spec.protocol != flow.protocol {
        return false;
    }
    match &spec.port {
        PortMatch::All => true,
        PortMatch::Range(range) => range.contains(flow.port),
        PortMatch::Named(name) => {
            flow.dst_pod
                .and_then(|pod| pod.named_port(name, flow.protocol))
                == Some(flow.port)
        }
    }
}

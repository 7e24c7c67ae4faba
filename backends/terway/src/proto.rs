//! The plugin ↔ agent protocol: one JSON request line, one JSON reply line, over the
//! agent's root-only unix socket. Every request carries [`VERSION`]; an agent answers a
//! version it does not speak with [`ErrorKind::Version`] instead of guessing.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};
use unicni_core::{Allocation, AttachmentId, PodRef};

pub const VERSION: u32 = 1;

/// Where the agent listens, under `node.run_dir`.
pub const SOCKET_NAME: &str = "terway.sock";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
    #[serde(flatten)]
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// Reserve addresses (shared) or a whole ENI (exclusive) for a pod.
    Allocate {
        id: AttachmentId,
        pod: PodRef,
        /// The pod's network namespace path: the agent releases an attachment whose
        /// namespace vanished without a DEL.
        netns: Option<String>,
    },
    /// What `id` holds now, without reserving anything.
    Lookup { id: AttachmentId },
    /// Give back what `id` holds; fixed-IP pods keep their address on hold.
    Release { id: AttachmentId },
    /// Every address held and by which attachment (CNI GC releases the stale ones).
    List,
    /// Whether the agent can serve allocations now.
    Status,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Reply {
    Allocated(Box<PodNetwork>),
    /// Lookup found nothing (not an error: DEL of an unknown attachment succeeds).
    NotFound,
    Released,
    Listed {
        allocations: Vec<Allocation>,
    },
    Ready,
    Error {
        kind: ErrorKind,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The agent is starting, or the node cannot host pods; retry later (CNI code 11).
    NotReady,
    /// No address can be had: vSwitches out of IPs, ENI limit reached (code 100).
    Exhausted,
    /// The pod asked for something that cannot exist (unknown vSwitch, wrong zone) (7).
    InvalidRequest,
    /// The request's version is not one this agent speaks (code 1).
    Version,
    /// The cloud or the node failed; the message says what (code 11).
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PodMode {
    /// A veth; the pod's addresses are secondary IPs of a shared ENI.
    Shared,
    /// The whole ENI moves into the pod; a veth carries node and service traffic.
    Exclusive,
}

/// Everything the plugin needs to wire a pod, as the agent decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodNetwork {
    pub mode: PodMode,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub eni: EniInfo,
    /// The node's own addresses and the service CIDRs: an exclusive-ENI pod reaches them
    /// through its veth, not through the ENI.
    pub node_ips: Vec<IpNet>,
    pub service_cidrs: Vec<IpNet>,
    pub mtu: u32,
    /// The pin directory of the eBPF fast path when the agent runs it on this node
    /// (`terway.datapath = "ebpf"`, shared mode): the plugin attaches the pod's host veth
    /// and adds the pod's entry. Absent: the routing datapath alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_path: Option<String>,
    /// The agent's pin directory when it enforces NetworkPolicy (`policy.enabled`) and the
    /// pod is an exclusive-ENI one: the plugin attaches the policy programs (pinned under
    /// `<pin>/policy`) to the ENI inside the pod before bringing it up. Absent: no policy
    /// on the ENI (shared pods are enforced by the agent on the node's links).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// The ENI that owns the pod's addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EniInfo {
    pub id: String,
    /// Lowercase, colon-separated: the key that finds the ENI's link on the node.
    pub mac: String,
    pub vswitch_id: String,
    pub cidr: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub cidr_v6: Option<Ipv6Net>,
    pub gateway_v6: Option<Ipv6Addr>,
    /// The ENI's primary address (the pod's address in exclusive mode).
    pub primary_ip: Ipv4Addr,
    /// The policy-routing table of this ENI: 1000 + its link's ifindex (shared mode).
    pub table: u32,
}

impl Request {
    pub fn new(op: Op) -> Self {
        Self {
            version: VERSION,
            op,
        }
    }
}

impl Reply {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Reply::Error {
            kind,
            message: message.into(),
        }
    }
}

/// The routing table of the ENI whose link has `ifindex`.
pub fn eni_table(ifindex: u32) -> u32 {
    1000 + ifindex
}

/// The ENI link's ifindex from its table ([`eni_table`]'s inverse); None for a table that
/// is not an ENI's.
pub fn eni_ifindex(table: u32) -> Option<u32> {
    table.checked_sub(1000).filter(|i| *i > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_and_names_its_op() {
        let r = Request::new(Op::Release {
            id: AttachmentId::new("c1", "eth0"),
        });
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains("\"op\":\"release\""), "{s}");
        assert!(s.contains("\"version\":1"), "{s}");
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
    }

    #[test]
    fn fast_path_is_optional_on_the_wire() {
        // An agent without the field (older release) still parses; None is not sent.
        let net = PodNetwork {
            mode: PodMode::Shared,
            ipv4: Some("192.168.0.9".parse().unwrap()),
            ipv6: None,
            eni: EniInfo {
                id: "eni-1".into(),
                mac: "02:00:00:00:00:01".into(),
                vswitch_id: "vsw-1".into(),
                cidr: "192.168.0.0/24".parse().unwrap(),
                gateway: "192.168.0.253".parse().unwrap(),
                cidr_v6: None,
                gateway_v6: None,
                primary_ip: "192.168.0.2".parse().unwrap(),
                table: eni_table(7),
            },
            node_ips: vec![],
            service_cidrs: vec![],
            mtu: 1500,
            fast_path: None,
            policy: None,
        };
        let s = serde_json::to_string(&net).unwrap();
        assert!(!s.contains("fast_path"), "{s}");
        assert!(!s.contains("policy"), "{s}");
        assert_eq!(serde_json::from_str::<PodNetwork>(&s).unwrap(), net);
        let with = PodNetwork {
            fast_path: Some("/sys/fs/bpf/unicni".into()),
            policy: Some("/sys/fs/bpf/unicni".into()),
            ..net
        };
        let s = serde_json::to_string(&with).unwrap();
        assert_eq!(serde_json::from_str::<PodNetwork>(&s).unwrap(), with);
        assert_eq!(eni_ifindex(with.eni.table), Some(7));
        assert_eq!(eni_ifindex(0), None);
        assert_eq!(eni_ifindex(1000), None);
    }

    #[test]
    fn error_reply_carries_kind() {
        let s = serde_json::to_string(&Reply::error(ErrorKind::NotReady, "starting")).unwrap();
        assert!(s.contains("\"kind\":\"not-ready\""), "{s}");
    }
}

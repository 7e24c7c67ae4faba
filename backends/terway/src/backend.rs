//! The terway backend as the CNI plugin runs it: addresses come from the agent over its
//! socket (an `Ipam` whose allocate is a request), the plugin wires the pod itself (a
//! `Datapath`); the core's `Backend` composes the two.

use crate::client::Client;
use crate::datapath;
use crate::proto::{Op, PodNetwork, Reply};
use async_trait::async_trait;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use unicni_core::{
    Allocation, Attachment, AttachmentId, Backend, Datapath, Error, IpAssignment, Ipam,
    NetworkResult, NodeStatus, Result,
};

/// The plugin's view of its conflist entry (`"backend": "terway"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerwayNetConf {
    pub socket: PathBuf,
    pub timeout: Duration,
    pub exclusive: bool,
}

impl TerwayNetConf {
    pub fn from_json(raw: &serde_json::Value) -> Result<Self> {
        let socket = raw
            .get("socket")
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                Error::InvalidConfig(
                    "field \"socket\" is missing: the path of the agent's socket, e.g. /run/unicni/terway.sock".into(),
                )
            })?;
        let timeout = match raw.get("timeoutSeconds") {
            None => 60,
            Some(v) => v.as_u64().filter(|s| *s > 0).ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "field \"timeoutSeconds\" = {v}: a number of seconds, 1 or more"
                ))
            })?,
        };
        let exclusive = match raw
            .get("mode")
            .and_then(|v| v.as_str())
            .unwrap_or("shared-eni")
        {
            "shared-eni" => false,
            "exclusive-eni" => true,
            other => {
                return Err(Error::InvalidConfig(format!(
                    "field \"mode\" = {other:?}: allowed values are shared-eni, exclusive-eni"
                )))
            }
        };
        Ok(Self {
            socket: socket.into(),
            timeout: Duration::from_secs(timeout),
            exclusive,
        })
    }
}

/// The terway plugin: [`AgentIpam`] (the agent behind the socket) and [`PodDatapath`]
/// (the pod wiring), composed by the core's [`Backend`] operations.
pub struct TerwayBackend {
    ipam: AgentIpam,
    datapath: PodDatapath,
}

impl TerwayBackend {
    pub fn new(conf: &TerwayNetConf) -> Self {
        let client = Client::new(&conf.socket, conf.timeout);
        let known = Known::default();
        Self {
            ipam: AgentIpam {
                client: client.clone(),
                known: known.clone(),
            },
            datapath: PodDatapath { client, known },
        }
    }
}

/// What the agent said about each attachment during this invocation. The datapath needs
/// the whole [`PodNetwork`] (the ENI, its table, the fast path), not only the addresses
/// the `Ipam` returns: keeping the agent's answer spares it a second round trip.
#[derive(Clone, Default)]
struct Known(Arc<Mutex<HashMap<AttachmentId, PodNetwork>>>);

impl Known {
    fn put(&self, id: &AttachmentId, net: &PodNetwork) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), net.clone());
    }
    fn get(&self, id: &AttachmentId) -> Option<PodNetwork> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
    fn forget(&self, id: &AttachmentId) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

async fn lookup(client: &Client, id: &AttachmentId) -> Result<Option<PodNetwork>> {
    match client.call(Op::Lookup { id: id.clone() }).await? {
        Reply::Allocated(net) => Ok(Some(*net)),
        _ => Ok(None),
    }
}

/// The addresses of `net` as the pod sees them.
pub fn assignments(net: &PodNetwork) -> Vec<IpAssignment> {
    let mut out = Vec::new();
    if let Some(v4) = net.ipv4 {
        let len = match net.mode {
            crate::proto::PodMode::Shared => 32,
            crate::proto::PodMode::Exclusive => net.eni.cidr.prefix_len(),
        };
        if let Ok(n) = Ipv4Net::new(v4, len) {
            out.push(IpAssignment {
                address: IpNet::V4(n),
                gateway: Some(match net.mode {
                    crate::proto::PodMode::Shared => std::net::Ipv4Addr::new(169, 254, 1, 1).into(),
                    crate::proto::PodMode::Exclusive => net.eni.gateway.into(),
                }),
            });
        }
    }
    if let Some(v6) = net.ipv6 {
        let len = match (net.mode, net.eni.cidr_v6) {
            (crate::proto::PodMode::Exclusive, Some(c)) => c.prefix_len(),
            _ => 128,
        };
        if let Ok(n) = Ipv6Net::new(v6, len) {
            out.push(IpAssignment {
                address: IpNet::V6(n),
                gateway: net.eni.gateway_v6.map(Into::into),
            });
        }
    }
    out
}

#[async_trait]
impl Backend for TerwayBackend {
    fn ipam(&self) -> &dyn Ipam {
        &self.ipam
    }
    fn datapath(&self) -> &dyn Datapath {
        &self.datapath
    }

    /// The agent answers every request, allocations included, with "not ready" until its
    /// pool is: ADD goes straight to the allocation.
    fn allocate_checks_readiness(&self) -> bool {
        true
    }

    async fn status(&self) -> Result<NodeStatus> {
        match self.ipam.client.call(Op::Status).await {
            Ok(_) => Ok(NodeStatus::Ready),
            Err(Error::TryAgain(why)) => Ok(NodeStatus::NotReady(why)),
            Err(e) => Err(e),
        }
    }
}

/// The agent as an `Ipam`: allocate is a request carrying the pod's identity (fixed IPs,
/// per-pod vSwitch and security group from its annotations) and its namespace.
struct AgentIpam {
    client: Client,
    known: Known,
}

#[async_trait]
impl Ipam for AgentIpam {
    async fn allocate(&self, att: &Attachment) -> Result<Vec<IpAssignment>> {
        let reply = self
            .client
            .call(Op::Allocate {
                id: att.id.clone(),
                pod: att.pod.clone(),
                netns: att.netns.as_ref().map(|p| p.display().to_string()),
            })
            .await?;
        let Reply::Allocated(net) = reply else {
            return Err(Error::TryAgain(format!(
                "the unicni agent answered an allocation with {reply:?}"
            )));
        };
        self.known.put(&att.id, &net);
        Ok(assignments(&net))
    }

    async fn held(&self, id: &AttachmentId) -> Result<Vec<IpAssignment>> {
        Ok(match lookup(&self.client, id).await? {
            Some(net) => {
                self.known.put(id, &net);
                assignments(&net)
            }
            None => Vec::new(),
        })
    }

    async fn release(&self, id: &AttachmentId) -> Result<()> {
        self.known.forget(id);
        self.client
            .call(Op::Release { id: id.clone() })
            .await
            .map(|_| ())
    }

    async fn list(&self) -> Result<Vec<Allocation>> {
        match self.client.call(Op::List).await? {
            Reply::Listed { allocations } => Ok(allocations),
            other => Err(Error::TryAgain(format!(
                "the unicni agent answered a listing with {other:?}"
            ))),
        }
    }
}

/// The pod wiring as a `Datapath`. It wires what the agent decided for the attachment
/// (the ENI, its table), which it has from the allocation or asks the agent for.
struct PodDatapath {
    client: Client,
    known: Known,
}

impl PodDatapath {
    async fn network(&self, id: &AttachmentId) -> Result<PodNetwork> {
        if let Some(net) = self.known.get(id) {
            return Ok(net);
        }
        lookup(&self.client, id).await?.ok_or_else(|| {
            Error::UnknownAttachment(format!("the unicni agent holds nothing for {id}"))
        })
    }
}

#[async_trait]
impl Datapath for PodDatapath {
    /// The node is the agent's to prepare (ENIs, tables, sysctls): nothing on the ADD path.
    async fn prepare_node(&self) -> Result<()> {
        Ok(())
    }
    async fn setup(&self, att: &Attachment, _ips: &[IpAssignment]) -> Result<NetworkResult> {
        let net = self.network(&att.id).await?;
        datapath::setup(att, &net).await
    }
    /// With what the agent knows, or from the host's own links when the agent cannot say
    /// (it is down, or already forgot the attachment): DEL must still unwire.
    async fn teardown(&self, att: &Attachment) -> Result<()> {
        let net = match self.known.get(&att.id) {
            Some(net) => Some(net),
            None => lookup(&self.client, &att.id).await.ok().flatten(),
        };
        datapath::teardown(att, net.as_ref()).await
    }
    async fn check(&self, att: &Attachment, _ips: &[IpAssignment]) -> Result<()> {
        let net = self.network(&att.id).await?;
        datapath::check(att, &net).await
    }
    async fn collect_garbage(&self, valid: &[AttachmentId]) -> Result<usize> {
        datapath::collect_garbage(valid).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{EniInfo, PodMode, Request};
    use std::sync::Mutex as StdMutex;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use unicni_core::PodRef;

    fn net(ip: &str) -> PodNetwork {
        PodNetwork {
            mode: PodMode::Shared,
            ipv4: Some(ip.parse().unwrap()),
            ipv6: None,
            eni: EniInfo {
                id: "eni-1".into(),
                mac: "02:00:00:00:00:01".into(),
                vswitch_id: "vsw-1".into(),
                cidr: "192.0.2.0/24".parse().unwrap(),
                gateway: "192.0.2.253".parse().unwrap(),
                cidr_v6: None,
                gateway_v6: None,
                primary_ip: "192.0.2.2".parse().unwrap(),
                table: crate::proto::eni_table(7),
            },
            node_ips: vec![],
            service_cidrs: vec![],
            mtu: 1500,
            fast_path: None,
            policy: None,
        }
    }

    /// An agent that answers from `answer` and records every op it was asked.
    fn fake_agent(
        dir: &std::path::Path,
        answer: fn(&Op) -> Reply,
    ) -> (TerwayBackend, Arc<StdMutex<Vec<Op>>>) {
        let path = dir.join("terway.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (r, mut w) = s.into_split();
                let mut line = String::new();
                BufReader::new(r).read_line(&mut line).await.unwrap();
                let req: Request = serde_json::from_str(&line).unwrap();
                let reply = answer(&req.op);
                log.lock().unwrap().push(req.op);
                let mut out = serde_json::to_vec(&reply).unwrap();
                out.push(b'\n');
                w.write_all(&out).await.unwrap();
            }
        });
        let conf = TerwayNetConf {
            socket: path,
            timeout: Duration::from_secs(5),
            exclusive: false,
        };
        (TerwayBackend::new(&conf), seen)
    }

    fn att(id: &str) -> Attachment {
        Attachment {
            id: AttachmentId::new(id, "eth0"),
            netns: None,
            pod: PodRef {
                namespace: Some("ns".into()),
                name: Some("web-0".into()),
                uid: None,
            },
        }
    }

    #[tokio::test]
    async fn add_asks_with_the_pod_identity_and_a_failed_wiring_gives_the_address_back() {
        let dir = tempfile::tempdir().unwrap();
        let (b, seen) = fake_agent(dir.path(), |op| match op {
            Op::Allocate { .. } => Reply::Allocated(Box::new(net("192.0.2.9"))),
            Op::Status => Reply::Ready,
            _ => Reply::Released,
        });
        // No namespace: the wiring fails after the agent reserved.
        let err = b.add(&att("c1")).await.unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
        let ops = seen.lock().unwrap().clone();
        // The allocation is the first request: the agent answers it "not ready" itself,
        // so ADD makes no separate status round trip.
        assert!(matches!(ops.first(), Some(Op::Allocate { .. })), "{ops:?}");
        assert!(!ops.contains(&Op::Status), "{ops:?}");
        let allocate = ops
            .iter()
            .find_map(|o| match o {
                Op::Allocate { pod, .. } => Some(pod.clone()),
                _ => None,
            })
            .expect("the agent was asked to allocate");
        assert_eq!(allocate.name.as_deref(), Some("web-0"));
        assert!(
            ops.contains(&Op::Release {
                id: AttachmentId::new("c1", "eth0")
            }),
            "{ops:?}"
        );
    }

    #[tokio::test]
    async fn check_compares_prev_result_with_what_the_agent_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (b, _) = fake_agent(dir.path(), |op| match op {
            Op::Lookup { .. } => Reply::Allocated(Box::new(net("192.0.2.9"))),
            _ => Reply::NotFound,
        });
        let err = b
            .check(&att("c1"), &["192.0.2.10/32".parse().unwrap()])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::CheckFailed(m) if m.contains("192.0.2.10")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn list_is_what_the_agent_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (b, seen) = fake_agent(dir.path(), |op| match op {
            Op::List => Reply::Listed {
                allocations: vec![
                    Allocation {
                        address: "192.0.2.9".parse().unwrap(),
                        id: AttachmentId::new("keep", "eth0"),
                    },
                    Allocation {
                        address: "192.0.2.10".parse().unwrap(),
                        id: AttachmentId::new("gone", "eth0"),
                    },
                    Allocation {
                        address: "fd00::10".parse().unwrap(),
                        id: AttachmentId::new("gone", "eth0"),
                    },
                ],
            },
            _ => Reply::Released,
        });
        let listed = b.ipam().list().await.unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(
            listed[2].address,
            "fd00::10".parse::<std::net::IpAddr>().unwrap()
        );
        assert!(seen.lock().unwrap().contains(&Op::List));
    }
}

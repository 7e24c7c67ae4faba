//! The terway backend as the CNI plugin runs it: addresses come from the agent over its
//! socket, the plugin wires the pod itself.

use crate::client::Client;
use crate::datapath;
use crate::proto::{Op, PodNetwork, Reply};
use async_trait::async_trait;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::path::PathBuf;
use std::time::Duration;
use unicni_core::{
    Allocation, Attachment, AttachmentId, Backend, Capabilities, Datapath, Error, IpAssignment,
    Ipam, NetworkResult, NodeStatus, PodRef, Result,
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

pub struct TerwayBackend {
    client: Client,
    exclusive: bool,
    ipam: AgentIpam,
    datapath: PodDatapath,
}

impl TerwayBackend {
    pub fn new(conf: &TerwayNetConf) -> Self {
        let client = Client::new(&conf.socket, conf.timeout);
        Self {
            ipam: AgentIpam {
                client: client.clone(),
            },
            datapath: PodDatapath {
                client: client.clone(),
            },
            client,
            exclusive: conf.exclusive,
        }
    }

    async fn lookup(&self, id: &AttachmentId) -> Result<Option<PodNetwork>> {
        lookup(&self.client, id).await
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
    fn capabilities(&self) -> Capabilities {
        unicni_capacity::capabilities::terway(self.exclusive)
    }
    fn ipam(&self) -> &dyn Ipam {
        &self.ipam
    }
    fn datapath(&self) -> &dyn Datapath {
        &self.datapath
    }

    async fn status(&self) -> Result<NodeStatus> {
        match self.client.call(Op::Status).await {
            Ok(_) => Ok(NodeStatus::Ready),
            Err(Error::TryAgain(why)) => Ok(NodeStatus::NotReady(why)),
            Err(e) => Err(e),
        }
    }

    /// ADD: the agent reserves (with the pod's identity, for fixed IPs and annotations),
    /// the plugin wires; a failed wiring gives everything back.
    async fn add(&self, att: &Attachment) -> Result<NetworkResult> {
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
        unicni_core::failpoint::hit("ipam-reserved");
        match datapath::setup(att, &net).await {
            Ok(res) => Ok(res),
            Err(err) => {
                let _ = datapath::teardown(att, Some(&net)).await;
                let _ = self.client.call(Op::Release { id: att.id.clone() }).await;
                Err(err)
            }
        }
    }

    /// DEL: unwire (with what the agent knows, or from the host's own links when the
    /// agent cannot say), then release.
    async fn del(&self, att: &Attachment) -> Result<()> {
        let net = self.lookup(&att.id).await.ok().flatten();
        datapath::teardown(att, net.as_ref()).await?;
        self.client
            .call(Op::Release { id: att.id.clone() })
            .await
            .map(|_| ())
    }

    async fn check(&self, att: &Attachment, expected: &[IpNet]) -> Result<()> {
        let net = self.lookup(&att.id).await?.ok_or_else(|| {
            Error::UnknownAttachment(format!("the unicni agent holds nothing for {}", att.id))
        })?;
        let held = assignments(&net);
        if let Some(addr) = expected
            .iter()
            .find(|a| !held.iter().any(|h| h.address.addr() == a.addr()))
        {
            return Err(Error::CheckFailed(format!(
                "prevResult lists {addr} but {} holds {:?}",
                att.id,
                held.iter().map(|h| h.address).collect::<Vec<_>>()
            )));
        }
        datapath::check(att, &net).await
    }

    async fn assignments_of(&self, id: &AttachmentId) -> Result<Vec<IpAssignment>> {
        Ok(self
            .lookup(id)
            .await?
            .map(|n| assignments(&n))
            .unwrap_or_default())
    }

    async fn gc(&self, valid: &[AttachmentId]) -> Result<usize> {
        let released = match self
            .client
            .call(Op::Gc {
                valid: valid.to_vec(),
            })
            .await?
        {
            Reply::Collected { released } => released,
            _ => 0,
        };
        datapath::collect_garbage(valid).await?;
        Ok(released)
    }
}

/// `Ipam` over the agent, for callers that go through the trait; pod identity is not
/// known there, so `Backend::add` talks to the agent itself.
struct AgentIpam {
    client: Client,
}

#[async_trait]
impl Ipam for AgentIpam {
    async fn allocate(&self, id: &AttachmentId) -> Result<Vec<IpAssignment>> {
        match self
            .client
            .call(Op::Allocate {
                id: id.clone(),
                pod: PodRef::default(),
                netns: None,
            })
            .await?
        {
            Reply::Allocated(net) => Ok(assignments(&net)),
            other => Err(Error::TryAgain(format!("unexpected agent reply {other:?}"))),
        }
    }
    async fn release(&self, id: &AttachmentId) -> Result<()> {
        self.client
            .call(Op::Release { id: id.clone() })
            .await
            .map(|_| ())
    }
    async fn list(&self) -> Result<Vec<Allocation>> {
        // The agent owns the list; GC goes through `Backend::gc`.
        Ok(Vec::new())
    }
}

/// `Datapath` over the pod wiring: it asks the agent what the attachment holds.
struct PodDatapath {
    client: Client,
}

#[async_trait]
impl Datapath for PodDatapath {
    async fn prepare_node(&self) -> Result<()> {
        Ok(())
    }
    async fn setup(&self, att: &Attachment, _ips: &[IpAssignment]) -> Result<NetworkResult> {
        let net = lookup(&self.client, &att.id).await?.ok_or_else(|| {
            Error::UnknownAttachment(format!("the unicni agent holds nothing for {}", att.id))
        })?;
        datapath::setup(att, &net).await
    }
    async fn teardown(&self, att: &Attachment) -> Result<()> {
        let net = lookup(&self.client, &att.id).await.ok().flatten();
        datapath::teardown(att, net.as_ref()).await
    }
    async fn check(&self, att: &Attachment, _ips: &[IpAssignment]) -> Result<()> {
        let net = lookup(&self.client, &att.id).await?.ok_or_else(|| {
            Error::UnknownAttachment(format!("the unicni agent holds nothing for {}", att.id))
        })?;
        datapath::check(att, &net).await
    }
    async fn collect_garbage(&self, valid: &[AttachmentId]) -> Result<usize> {
        datapath::collect_garbage(valid).await
    }
}

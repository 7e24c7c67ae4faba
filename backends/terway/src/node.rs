//! The node as the pool sees it: ENI links (by MAC) and the metadata service's view of
//! each ENI's addresses. An address is handed out only once both agree it is there.

use crate::datapath::{self, EniLink};
use crate::proto::EniInfo;
use async_trait::async_trait;
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use unicni_cloud::MetadataClient;
use unicni_core::{Error, Result};

/// One ENI as the node's metadata service describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniView {
    pub ipv4s: Vec<Ipv4Addr>,
    pub ipv6s: Vec<Ipv6Addr>,
    /// Delegated prefixes the metadata service lists (prefix mode).
    pub ipv4_prefixes: Vec<Ipv4Net>,
    pub ipv6_prefixes: Vec<Ipv6Net>,
    pub gateway: Ipv4Addr,
    pub cidr: Ipv4Net,
    pub gateway_v6: Option<Ipv6Addr>,
    pub cidr_v6: Option<Ipv6Net>,
}

#[async_trait]
pub trait Node: Send + Sync {
    /// The ENI's link once present on the node, brought up and routed (`shared`).
    async fn eni_link(&self, eni: &EniInfo, shared: bool) -> Result<Option<EniLink>>;
    /// What the metadata service says about the ENI with `mac`; None while it does not
    /// know the ENI yet.
    async fn metadata(&self, mac: &str) -> Result<Option<EniView>>;
    /// Whether a pod's network namespace still exists.
    fn netns_exists(&self, path: &str) -> bool;
}

/// The real node: netlink in the agent's namespace and the instance metadata service.
pub struct HostNode {
    pub metadata: Arc<MetadataClient>,
}

fn md_err(e: unicni_cloud::CloudError) -> Error {
    Error::Unavailable(format!("instance metadata: {e}"))
}

#[async_trait]
impl Node for HostNode {
    async fn eni_link(&self, eni: &EniInfo, shared: bool) -> Result<Option<EniLink>> {
        let Some(link) = datapath::find_eni_link(&eni.mac).await? else {
            return Ok(None);
        };
        let mut eni = eni.clone();
        eni.table = crate::proto::eni_table(link.ifindex);
        datapath::prepare_eni(&eni, shared).await.map(Some)
    }

    async fn metadata(&self, mac: &str) -> Result<Option<EniView>> {
        let macs = self.metadata.macs().await.map_err(md_err)?;
        if !macs.iter().any(|m| m.eq_ignore_ascii_case(mac)) {
            return Ok(None);
        }
        let md = self.metadata.eni(mac).await.map_err(md_err)?;
        let cidr: Ipv4Net = md.vswitch_cidr.parse().map_err(|_| {
            Error::Unavailable(format!(
                "instance metadata: ENI {mac} has vswitch-cidr-block {:?}, not an IPv4 CIDR",
                md.vswitch_cidr
            ))
        })?;
        let base = format!("meta-data/network/interfaces/macs/{mac}");
        let gateway_v6 = match self.metadata.get(&format!("{base}/ipv6-gateway")).await {
            Ok(s) => s.trim().parse().ok(),
            Err(_) => None,
        };
        let cidr_v6 = match self
            .metadata
            .get(&format!("{base}/vswitch-ipv6-cidr-block"))
            .await
        {
            Ok(s) => s.trim().parse().ok(),
            Err(_) => None,
        };
        Ok(Some(EniView {
            ipv4s: md.private_ipv4s,
            ipv6s: md.ipv6s,
            ipv4_prefixes: md.ipv4_prefixes,
            ipv6_prefixes: md.ipv6_prefixes,
            gateway: md.gateway,
            cidr,
            gateway_v6,
            cidr_v6,
        }))
    }

    fn netns_exists(&self, path: &str) -> bool {
        std::path::Path::new(path).exists()
    }
}

/// A node whose ENI links also get the eBPF fast path's ENI program
/// (`terway.datapath = "ebpf"`, shared mode) each time the pool prepares them.
pub struct FastPathNode {
    pub inner: Arc<dyn Node>,
    /// The fast path's pin directory.
    pub pin: std::path::PathBuf,
}

#[async_trait]
impl Node for FastPathNode {
    async fn eni_link(&self, eni: &EniInfo, shared: bool) -> Result<Option<EniLink>> {
        let link = self.inner.eni_link(eni, shared).await?;
        if let (Some(l), true) = (&link, shared) {
            // Without it the ENI's traffic for pods takes the host path: slower, not broken.
            if let Err(e) = datapath::attach_eni_fast_path(&self.pin, l.ifindex) {
                tracing::warn!(eni = %eni.id, link = %l.name, error = %e, "ENI without the eBPF fast path");
            }
        }
        Ok(link)
    }

    async fn metadata(&self, mac: &str) -> Result<Option<EniView>> {
        self.inner.metadata(mac).await
    }

    fn netns_exists(&self, path: &str) -> bool {
        self.inner.netns_exists(path)
    }
}

//! The flannel [`Backend`]: file IPAM over the node subnet (and its IPv6 subnet on a
//! dual-stack cluster), bridge datapath.

use crate::bridge::BridgeDatapath;
use crate::ipam::{DualIpam, FileIpam};
use crate::netconf::{FlannelNetConf, NodeNetwork};
use async_trait::async_trait;
use unicni_core::{Backend, Datapath, Ipam, NodeStatus, Result};

pub struct FlannelBackend {
    net: NodeNetwork,
    has_lease: bool,
    lease_file: String,
    ipam: DualIpam,
    datapath: BridgeDatapath,
}

impl FlannelBackend {
    /// Builds the backend from the plugin's network configuration. A node without a lease
    /// still gets a backend (DEL and GC must work), whose status says it is not ready.
    pub fn new(network_name: &str, conf: &FlannelNetConf) -> Result<FlannelBackend> {
        let (net, has_lease) = match conf.resolve(network_name)? {
            Some(n) => (n, true),
            None => (conf.without_lease(network_name)?, false),
        };
        let ipam = DualIpam::new(
            FileIpam::new(&net.state_dir, network_name, net.subnet, net.gateway),
            net.ipv6.as_ref().map(|s| (s.subnet, s.gateway)),
        );
        let datapath = BridgeDatapath::new(net.clone())?;
        Ok(FlannelBackend {
            has_lease,
            lease_file: conf.subnet_file().display().to_string(),
            ipam,
            datapath,
            net,
        })
    }

    pub fn network(&self) -> &NodeNetwork {
        &self.net
    }
}

#[async_trait]
impl Backend for FlannelBackend {
    fn ipam(&self) -> &dyn Ipam {
        &self.ipam
    }

    fn datapath(&self) -> &dyn Datapath {
        &self.datapath
    }

    async fn status(&self) -> Result<NodeStatus> {
        if !self.has_lease {
            return Ok(NodeStatus::NotReady(format!(
                "this node has no subnet lease yet: the config names no subnet and {} does \
                 not exist; start `unicni agent` (or set flannel.node_subnet) and retry",
                self.lease_file
            )));
        }
        let dir = &self.net.state_dir;
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Ok(NodeStatus::NotReady(format!(
                "state directory {} is not writable: {e}",
                dir.display()
            )));
        }
        Ok(NodeStatus::Ready)
    }
}

//! The flannel backend.
//!
//! Pod addresses come from a cluster CIDR independent of the VPC; each node holds one
//! fixed-size subnet of it (a lease). On the node, pods hang off a bridge through veth
//! pairs; the bridge holds the subnet's first address as the pods' gateway. Traffic to
//! other nodes' subnets takes the mode's path (vxlan, host-gw, vpc-route: programmed by
//! the agent); traffic leaving the cluster CIDR is masqueraded.

pub mod agent;
pub mod backend;
pub mod bridge;
pub mod hostgw;
pub mod install;
pub mod ipam;
pub mod lease;
pub mod lease_store;
pub mod masq;
pub mod names;
pub mod netconf;
pub mod peers;
pub mod reconcile;
pub mod vpcroute;
pub mod vxlan;

pub use backend::FlannelBackend;
pub use netconf::FlannelNetConf;

/// The flannel backend for the binary's factory: the plugin from a conflist entry, the
/// installer and the node agent from a config.
pub struct FlannelModule;

#[async_trait::async_trait]
impl unicni_core::BackendModule for FlannelModule {
    fn kind(&self) -> &'static str {
        "flannel"
    }
    fn plugin(
        &self,
        entry: &serde_json::Value,
        network_name: &str,
    ) -> unicni_core::Result<Box<dyn unicni_core::Backend>> {
        let conf = FlannelNetConf::from_json(entry)?;
        Ok(Box::new(FlannelBackend::new(network_name, &conf)?))
    }
    fn installer(&self, config: &unicni_config::Config) -> Box<dyn unicni_core::Install> {
        Box::new(install::FlannelInstall::new(config))
    }
    async fn node(
        &self,
        config: &unicni_config::Config,
        node: &str,
    ) -> unicni_core::Result<std::sync::Arc<dyn unicni_core::NodeAgent>> {
        Ok(std::sync::Arc::new(
            agent::FlannelNode::new(config, node.to_string()).await?,
        ))
    }
}

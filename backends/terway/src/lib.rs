//! The terway backend: pods take addresses straight from the VPC through elastic network
//! interfaces. The agent owns the ENI pool and answers the plugin over a unix socket
//! ([`proto`]); the plugin wires the pod ([`datapath`]).

pub mod backend;
pub mod client;
pub mod datapath;
pub mod install;
pub mod ip_condition;
pub mod node;
pub mod podinfo;
pub mod pool;
pub mod proto;
pub mod server;
pub mod state;

pub use backend::{TerwayBackend, TerwayNetConf};
pub mod agent;

/// The terway backend for the binary's factory: the plugin from a conflist entry, the
/// installer and the node agent from a config.
pub struct TerwayModule;

#[async_trait::async_trait]
impl unicni_core::BackendModule for TerwayModule {
    fn kind(&self) -> &'static str {
        "terway"
    }
    fn plugin(
        &self,
        entry: &serde_json::Value,
        _network_name: &str,
    ) -> unicni_core::Result<Box<dyn unicni_core::Backend>> {
        Ok(Box::new(TerwayBackend::new(&TerwayNetConf::from_json(
            entry,
        )?)))
    }
    fn installer(&self, config: &unicni_config::Config) -> Box<dyn unicni_core::Install> {
        Box::new(install::TerwayInstall::new(config))
    }
    async fn node(
        &self,
        config: &unicni_config::Config,
        node: &str,
    ) -> unicni_core::Result<std::sync::Arc<dyn unicni_core::NodeAgent>> {
        Ok(std::sync::Arc::new(
            agent::TerwayNode::new(config, node).await?,
        ))
    }
}

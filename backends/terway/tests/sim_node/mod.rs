//! What the pool tests (pool.rs, ip_condition.rs) share against a running cloud emulator:
//! the real cloud client, and the node they stand in, whose ENI links "appear" once the
//! emulator's metadata service lists the ENI (metadata through the real client;
//! tests/datapath.rs covers real links).

use async_trait::async_trait;
use std::sync::Arc;
use unicni_cloud::{Cloud, MetadataClient};
use unicni_cloud_sim::RunningSim;
use unicni_terway::datapath::EniLink;
use unicni_terway::node::{EniView, HostNode, Node};
use unicni_terway::proto::EniInfo;

/// The real cloud client, pointed at the emulator.
pub async fn cloud(s: &RunningSim) -> Arc<dyn Cloud> {
    let cfg = unicni_config::CloudConfig {
        region: Some("cn-hangzhou".into()),
        endpoint: Some(s.endpoint()),
        access_key_id: Some("unicni-sim".into()),
        access_key_secret: Some("unicni-sim-secret".into()),
        ..Default::default()
    };
    Arc::new(unicni_cloud::from_config(&cfg).await.unwrap())
}

pub struct SimNode {
    pub md: HostNode,
}

impl SimNode {
    /// The node whose instance metadata service is at `endpoint`.
    pub fn at(endpoint: &str) -> Arc<SimNode> {
        Arc::new(SimNode {
            md: HostNode {
                metadata: Arc::new(MetadataClient::new(Some(endpoint)).unwrap()),
            },
        })
    }
}

#[async_trait]
impl Node for SimNode {
    async fn eni_link(&self, eni: &EniInfo, _shared: bool) -> unicni_core::Result<Option<EniLink>> {
        let macs = self.md.metadata.macs().await.unwrap_or_default();
        Ok(macs
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&eni.mac))
            .then(|| EniLink {
                name: format!("eth-{}", &eni.id[eni.id.len() - 3..]),
                ifindex: 10 + eni.id.len() as u32,
            }))
    }
    async fn metadata(&self, mac: &str) -> unicni_core::Result<Option<EniView>> {
        self.md.metadata(mac).await
    }
    fn netns_exists(&self, path: &str) -> bool {
        std::path::Path::new(path).exists()
    }
}

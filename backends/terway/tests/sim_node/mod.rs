//! The node the pool tests (pool.rs, ip_condition.rs) stand in: its ENI links "appear"
//! once the cloud emulator's metadata service lists the ENI; metadata comes from that
//! service through the real client (tests/datapath.rs covers real links).

use async_trait::async_trait;
use unicni_terway::datapath::EniLink;
use unicni_terway::node::{EniView, HostNode, Node};
use unicni_terway::proto::EniInfo;

pub struct SimNode {
    pub md: HostNode,
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

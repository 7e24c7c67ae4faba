//! What the pool tests (pool.rs, ip_condition.rs) share against a running cloud emulator:
//! the real cloud client, and the node they stand in, whose ENI links "appear" once the
//! emulator's metadata service lists the ENI (metadata through the real client;
//! tests/datapath.rs covers real links).

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use unicni_cloud::PollPolicy;
use unicni_cloud::{Cloud, MetadataClient};
use unicni_cloud_sim::RunningSim;
use unicni_terway::datapath::EniLink;
use unicni_terway::node::{EniView, HostNode, Node};
use unicni_terway::pool::PoolParams;
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

/// The pool's parameters for `instance` (an ecs.g7.large in cn-hangzhou-a), fast polls,
/// no pre-grow, no reclaim: what the tests were written for unless they say otherwise.
pub fn params(instance: &str, vswitches: &[&str], min: usize, max: usize) -> PoolParams {
    PoolParams {
        instance_id: instance.into(),
        zone: "cn-hangzhou-a".into(),
        cluster: "test".into(),
        limits: unicni_capacity::InstanceTypeTable::builtin()
            .get("ecs.g7.large")
            .cloned()
            .unwrap(),
        exclusive: false,
        ip_prefix: false,
        dual: false,
        vswitches: vswitches.iter().map(|s| s.to_string()).collect(),
        security_groups: vec!["sg-sim".into()],
        min,
        max,
        hold: Duration::from_secs(300),
        mtu: 1500,
        node_ips: vec![],
        service_cidrs: vec![],
        fast_path: None,
        policy: None,
        attach: PollPolicy {
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(10),
        },
        visible_timeout: Duration::from_secs(5),
        coalesce: Duration::from_millis(20),
        warm_up: 0,
        high_watermark_percent: 100,
        idle_reclaim: None,
        reclaim_batch: 10,
        reclaim_jitter_percent: 0,
    }
}

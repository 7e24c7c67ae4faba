//! Waiting for the cloud's asynchronous state changes: an attached ENI is `Attaching`
//! before `InUse`, a deleted one `Deleting` before it is gone, a new route entry
//! `Pending` before `Available`.

use crate::api::Cloud;
use crate::error::{CloudError, Result};
use crate::types::*;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct PollPolicy {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Polls DescribeNetworkInterfaces until the ENI is in `want` (e.g. `InUse` after an
/// attach, `Available` after a detach) and returns it.
pub async fn wait_eni_status(
    cloud: &dyn Cloud,
    eni_id: &str,
    want: EniStatus,
    policy: PollPolicy,
) -> Result<NetworkInterface> {
    let start = Instant::now();
    let filter = EniFilter {
        ids: vec![eni_id.to_string()],
        ..Default::default()
    };
    let mut last = None;
    loop {
        let found = cloud.describe_network_interfaces(&filter).await?;
        if let Some(eni) = found.into_iter().find(|e| e.id == eni_id) {
            if eni.status == want {
                return Ok(eni);
            }
            last = Some(eni.status);
        }
        if start.elapsed() >= policy.timeout {
            return Err(CloudError::Timeout {
                what: format!(
                    "ENI {eni_id} to become {} (last seen {})",
                    want.as_str(),
                    last.map(|s| s.as_str()).unwrap_or("nowhere")
                ),
                waited: start.elapsed(),
            });
        }
        tokio::time::sleep(policy.interval).await;
    }
}

/// Polls DescribeNetworkInterfaces until the ENI is gone (it is `Deleting` for a while
/// after DeleteNetworkInterface, and its addresses are still taken from the vSwitch until
/// then).
pub async fn wait_eni_deleted(cloud: &dyn Cloud, eni_id: &str, policy: PollPolicy) -> Result<()> {
    let start = Instant::now();
    let filter = EniFilter {
        ids: vec![eni_id.to_string()],
        ..Default::default()
    };
    loop {
        let found = cloud.describe_network_interfaces(&filter).await?;
        let Some(eni) = found.into_iter().find(|e| e.id == eni_id) else {
            return Ok(());
        };
        if start.elapsed() >= policy.timeout {
            return Err(CloudError::Timeout {
                what: format!(
                    "ENI {eni_id} to be deleted (last seen {})",
                    eni.status.as_str()
                ),
                waited: start.elapsed(),
            });
        }
        tokio::time::sleep(policy.interval).await;
    }
}

/// Polls DescribeRouteEntryList until the entry is `Available` and returns it.
pub async fn wait_route_entry_available(
    cloud: &dyn Cloud,
    route_table_id: &str,
    route_entry_id: &str,
    policy: PollPolicy,
) -> Result<RouteEntry> {
    let start = Instant::now();
    loop {
        let entries = cloud.describe_route_entries(route_table_id).await?;
        let entry = entries.into_iter().find(|e| e.id == route_entry_id);
        if let Some(e) = &entry {
            if e.status == RouteEntryStatus::Available {
                return Ok(e.clone());
            }
        }
        if start.elapsed() >= policy.timeout {
            return Err(CloudError::Timeout {
                what: format!(
                    "route entry {route_entry_id} in {route_table_id} to become Available (last seen {})",
                    entry.map(|e| format!("{:?}", e.status)).unwrap_or_else(|| "nowhere".into())
                ),
                waited: start.elapsed(),
            });
        }
        tokio::time::sleep(policy.interval).await;
    }
}

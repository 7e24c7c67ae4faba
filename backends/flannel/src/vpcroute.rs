//! vpc-route mode: the VPC router carries pod traffic between nodes. Each node's subnet is
//! one custom entry of the VPC route table with the node's instance as next hop; the node
//! itself installs no per-peer routes. Every agent creates its own entry and removes the
//! entries of subnets no longer leased (a node that left), so a departed node's entry is
//! cleaned up by whoever is still running.

use crate::lease::Lease;
use crate::reconcile::Pass;
use ipnet::IpNet;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use unicni_cloud::{
    Cloud, CloudError, CreateRouteEntryRequest, MetadataClient, RouteEntry, RouteEntryStatus,
};
use unicni_core::{Error, Result};

/// What ends a vpc-route pass without the node's own entry in place.
#[derive(Debug, thiserror::Error)]
pub enum VpcRouteError {
    #[error(
        "the VPC route table {table} has no room for this node's subnet {subnet}: {source}; \
         raise the route-table entry quota or remove nodes"
    )]
    Quota {
        table: String,
        subnet: String,
        source: CloudError,
    },
    #[error("route table {table}, entry for {subnet}: {source}")]
    Cloud {
        table: String,
        subnet: String,
        source: CloudError,
    },
}

impl From<VpcRouteError> for Error {
    fn from(e: VpcRouteError) -> Error {
        match e {
            VpcRouteError::Quota { .. } => Error::Exhausted(e.to_string()),
            VpcRouteError::Cloud { .. } => Error::Unavailable(e.to_string()),
        }
    }
}

pub struct VpcRoutes {
    pub cloud: Arc<dyn Cloud>,
    pub route_table: String,
    /// This node's instance: the next hop of its entry.
    pub instance: String,
    /// Only entries inside the cluster network are ours to remove.
    pub network: IpNet,
}

/// The outcome of one pass, in the agent's terms plus the cloud's.
#[derive(Debug, Default)]
pub struct RoutePass {
    pub pass: Pass,
    /// The node's own entry is `Available`.
    pub own_available: bool,
    /// Custom entries of the cluster network in the table after the pass.
    pub entries: usize,
}

fn cloud_err(e: CloudError) -> Error {
    Error::Unavailable(format!("cloud: {e}"))
}

/// Connects to the cloud from the `[cloud]` config and finds this node's instance and its
/// VPC's route table through the metadata service.
pub async fn connect(cfg: &unicni_config::CloudConfig, network: IpNet) -> Result<VpcRoutes> {
    let cloud = unicni_cloud::from_config(cfg).await.map_err(|e| {
        Error::InvalidConfig(format!(
            "flannel.mode = \"vpc-route\" needs the [cloud] section: {e}"
        ))
    })?;
    let md = MetadataClient::new(cfg.metadata_endpoint.as_deref()).map_err(cloud_err)?;
    let instance = md.instance_id().await.map_err(cloud_err)?;
    let vpc = md.vpc_id().await.map_err(cloud_err)?;
    let cloud: Arc<dyn Cloud> = Arc::new(cloud);
    let tables = cloud.describe_route_tables(&vpc).await.map_err(cloud_err)?;
    let table = tables
        .iter()
        .find(|t| t.table_type == "System")
        .or(tables.first())
        .ok_or_else(|| {
            Error::Unavailable(format!(
                "VPC {vpc} of instance {instance} has no route table: check the VPC in the console"
            ))
        })?;
    Ok(VpcRoutes {
        cloud,
        route_table: table.id.clone(),
        instance,
        network,
    })
}

impl VpcRoutes {
    fn ours(&self, e: &RouteEntry) -> bool {
        e.entry_type == "Custom"
            && e.destination_cidr
                .parse::<IpNet>()
                .is_ok_and(|d| self.network.contains(&d))
    }

    /// Makes the table hold exactly one entry per leased subnet: creates this node's
    /// entry (waiting for it to become `Available`), removes entries of subnets no longer
    /// leased. Quota exhaustion on the own entry is an error; other nodes' trouble is not.
    pub async fn reconcile(&self, me: &Lease, leases: &[Lease]) -> Result<RoutePass> {
        let mut out = RoutePass::default();
        let leased: HashSet<String> = leases
            .iter()
            .filter_map(|l| l.subnet.parse::<IpNet>().ok())
            .map(|n| n.trunc().to_string())
            .collect();
        let own: String = me
            .subnet
            .parse::<IpNet>()
            .map(|n| n.trunc().to_string())
            .map_err(|_| {
                Error::InvalidConfig(format!("leased subnet {:?} is not a CIDR", me.subnet))
            })?;
        let entries = self
            .cloud
            .describe_route_entries(&self.route_table)
            .await
            .map_err(cloud_err)?;
        let mut own_entry = None;
        for e in entries.iter().filter(|e| self.ours(e)) {
            let stale_own = e.destination_cidr == own && e.next_hop_id != self.instance;
            if e.destination_cidr == own && !stale_own {
                own_entry = Some(e.clone());
                continue;
            }
            if (stale_own || !leased.contains(&e.destination_cidr))
                && e.status == RouteEntryStatus::Available
            {
                match self
                    .cloud
                    .delete_route_entry(&self.route_table, &e.id)
                    .await
                {
                    Ok(()) | Err(CloudError::NotFound(_)) => {
                        tracing::info!(entry = %e.id, subnet = %e.destination_cidr, next_hop = %e.next_hop_id, "route entry of a departed node removed");
                        out.pass.removed += 1;
                    }
                    // Another agent is changing the table: the next pass tries again.
                    Err(err) => out.pass.errors.push(format!(
                        "delete route entry {} ({}): {err}",
                        e.id, e.destination_cidr
                    )),
                }
                continue;
            }
            if e.status == RouteEntryStatus::Available && leased.contains(&e.destination_cidr) {
                out.pass.peers += 1;
                out.pass.routes += 1;
            }
        }
        match own_entry {
            Some(e) if e.status == RouteEntryStatus::Available => out.own_available = true,
            Some(e) => {
                self.wait(&e.id).await?;
                out.own_available = true;
            }
            None => {
                let req = CreateRouteEntryRequest {
                    route_table_id: self.route_table.clone(),
                    destination_cidr: own.clone(),
                    next_hop_type: "Instance".into(),
                    next_hop_id: self.instance.clone(),
                    client_token: None,
                };
                match self.cloud.create_route_entry(&req).await {
                    Ok(id) => {
                        tracing::info!(entry = %id, subnet = %own, next_hop = %self.instance, table = %self.route_table, "route entry created");
                        out.pass.repaired += 1;
                        self.wait(&id).await?;
                        out.own_available = true;
                    }
                    Err(source @ CloudError::QuotaExceeded(_)) => {
                        return Err(VpcRouteError::Quota {
                            table: self.route_table.clone(),
                            subnet: own,
                            source,
                        }
                        .into())
                    }
                    Err(source) => {
                        return Err(VpcRouteError::Cloud {
                            table: self.route_table.clone(),
                            subnet: own,
                            source,
                        }
                        .into())
                    }
                }
            }
        }
        out.entries = out.pass.peers + usize::from(out.own_available);
        Ok(out)
    }

    async fn wait(&self, id: &str) -> Result<()> {
        let policy = unicni_cloud::PollPolicy {
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(30),
        };
        unicni_cloud::poll::wait_route_entry_available(
            self.cloud.as_ref(),
            &self.route_table,
            id,
            policy,
        )
        .await
        .map(|_| ())
        .map_err(cloud_err)
    }
}

//! The terway install half: admission (can this instance type host the mode and stack),
//! the conflist entry (the agent's socket and the mode) and uninstall (the pods' host
//! veths, routes and rules, the per-ENI route tables, the agent's socket, pins and state;
//! with `release_cloud` the node's secondary ENIs and their addresses).

use crate::datapath::{self, names};
use crate::pool::TAG_NODE;
use crate::proto::eni_ifindex;
use crate::server::socket_path;
use crate::state::StateFile;
use async_trait::async_trait;
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use unicni_cloud::{poll, Cloud, EniFilter, EniStatus, EniType, MetadataClient, PollPolicy};
use unicni_config::{Config, TerwayDatapath};
use unicni_core::{
    ApiAccess, ConflistEntry, DeployNeeds, Error, HostPathNeed, Install, Result, Store,
    UninstallOptions,
};
use unicni_net::netlink::AddressFamily;
use unicni_net::Netlink;

pub struct TerwayInstall {
    config: Config,
}

impl TerwayInstall {
    pub fn new(config: &Config) -> Self {
        Self {
            config: config.clone(),
        }
    }

    fn metadata(&self) -> Result<MetadataClient> {
        MetadataClient::new(self.config.cloud.metadata_endpoint.as_deref()).map_err(|e| {
            Error::InvalidConfig(format!("the [cloud] section's metadata_endpoint: {e}"))
        })
    }

    async fn cloud(&self) -> Result<unicni_cloud::AlibabaCloud> {
        unicni_cloud::from_config(&self.config.cloud)
            .await
            .map_err(|e| {
                Error::InvalidConfig(format!(
                    "backend.kind = \"terway\" needs the [cloud] section (endpoint, region, credentials): {e}"
                ))
            })
    }

    /// Detaches and deletes every secondary ENI the agent created for this instance (it
    /// tags them with the instance ID), which gives their addresses back with them.
    async fn release_cloud(&self, done: &mut Vec<String>) -> Result<()> {
        let md = self.metadata()?;
        let instance = md.instance_id().await.map_err(|e| {
            Error::Unavailable(format!(
                "learn this node's instance ID from the metadata service at {}: {e}",
                md.endpoint()
            ))
        })?;
        let cloud = self.cloud().await?;
        let cloud_err = |what: String| {
            move |e: unicni_cloud::CloudError| {
                Error::Unavailable(format!("{what}: {e}; run uninstall --release-cloud again"))
            }
        };
        let mine = cloud
            .describe_network_interfaces(&EniFilter {
                tags: vec![(TAG_NODE.to_string(), instance.clone())],
                ..Default::default()
            })
            .await
            .map_err(cloud_err(format!("list the ENIs of instance {instance}")))?;
        let wait = PollPolicy {
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(60),
        };
        for nic in mine {
            if nic.eni_type != EniType::Secondary {
                continue;
            }
            // An ENI already Deleting (an interrupted earlier run) only needs the wait.
            if nic.status != EniStatus::Deleting {
                if nic.status != EniStatus::Available {
                    cloud
                        .detach_network_interface(&nic.id, &instance)
                        .await
                        .map_err(cloud_err(format!("detach ENI {}", nic.id)))?;
                    poll::wait_eni_status(&cloud, &nic.id, EniStatus::Available, wait)
                        .await
                        .map_err(cloud_err(format!("wait for ENI {} to detach", nic.id)))?;
                }
                cloud
                    .delete_network_interface(&nic.id)
                    .await
                    .map_err(cloud_err(format!("delete ENI {}", nic.id)))?;
            }
            // Deletion is asynchronous (Deleting, then gone): report the ENI released only
            // once the cloud no longer lists it, so a decommissioned node leaks nothing.
            poll::wait_eni_deleted(&cloud, &nic.id, wait)
                .await
                .map_err(cloud_err(format!("wait for ENI {} to be deleted", nic.id)))?;
            done.push(format!(
                "released ENI {} ({} addresses) to the cloud",
                nic.id,
                nic.private_ips.len() + nic.ipv6s.len()
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Install for TerwayInstall {
    fn deploy_needs(&self) -> DeployNeeds {
        let c = &self.config;
        let mut api = Vec::new();
        // Pod annotations (vSwitch, security group, fixed IP) and their namespace's
        // defaults, from watched caches (podinfo::KubePods: this node's Pods by field
        // selector, the Namespaces), with one GET for a pod the watch has not delivered.
        if c.terway.pod_info_dir.is_none() {
            api.push(ApiAccess {
                group: "",
                resource: "pods",
                verbs: vec!["get", "list", "watch"],
                why: "terway: the pod's annotations (vSwitch, security group, fixed IP)",
            });
            api.push(ApiAccess {
                group: "",
                resource: "namespaces",
                verbs: vec!["get", "list", "watch"],
                why: "terway: the namespace's default annotations",
            });
        }
        // Pool exhaustion as the Node's SufficientIP condition and Events about the Node
        // (ip_condition): only on the Kubernetes store, like the agent.
        if c.store.kind == unicni_config::StoreKind::Kubernetes {
            api.push(ApiAccess {
                group: "",
                resource: "nodes/status",
                verbs: vec!["get", "patch"],
                why: "terway: the node's SufficientIP condition (ENI pool exhaustion)",
            });
            api.push(ApiAccess {
                group: "",
                resource: "events",
                verbs: vec!["create", "patch"],
                why: "terway: Events about the node when its ENI pool runs out",
            });
        }
        DeployNeeds {
            api,
            // The pool releases an address whose pod network namespace is gone
            // (Pool::maintain checks the path), and exclusive-ENI mode enters the pod's
            // namespace: the agent must see the runtime's namespaces, including those
            // mounted after it started.
            host_paths: vec![HostPathNeed {
                name: "netns",
                path: "/var/run/netns".into(),
                follow_host_mounts: true,
                why: "terway: pods' network namespaces (address GC, exclusive ENI)",
            }],
            cloud: true,
            ebpf: c.terway.datapath == TerwayDatapath::Ebpf,
        }
    }

    /// Refuses a node whose instance type cannot host the configured mode or stack
    /// (shared-ENI nodes need more than 11 pods; dual stack needs IPv6 = IPv4 per ENI).
    async fn admit(&self) -> Result<()> {
        let c = &self.config;
        let md = self.metadata()?;
        let instance_type = md.instance_type().await.map_err(|e| {
            Error::Unavailable(format!(
                "backend.kind = \"terway\": learn this node's instance type from the metadata service at {}: {e}",
                md.endpoint()
            ))
        })?;
        let cloud = self.cloud().await?;
        let limits = crate::agent::limits_of(&cloud, &instance_type).await?;
        crate::agent::admit(&limits, c.terway.mode, c.cluster.ip_stack)
            .map_err(|why| Error::Unavailable(format!("this node cannot join: {why}")))
    }

    /// The plugin only needs the agent's socket and the mode.
    async fn entry(&self, _store: &dyn Store, _with_agent: bool) -> Result<ConflistEntry> {
        let c = &self.config;
        let socket = socket_path(Path::new(&c.node.run_dir));
        Ok(ConflistEntry {
            plugin: json!({
                "backend": "terway",
                "mode": c.terway.mode.as_str(),
                "socket": socket,
                "timeoutSeconds": c.terway.agent_timeout_seconds,
            }),
            summary: format!(
                "terway {}, addresses from the agent on {}",
                c.terway.mode.as_str(),
                socket.display()
            ),
        })
    }

    async fn uninstall(&self, opts: UninstallOptions) -> Result<Vec<String>> {
        let c = &self.config;
        let mut done = Vec::new();
        // Every pod's host veth (its routes go with it) and its two rules: what GC does
        // when no attachment is valid any more.
        let removed = datapath::collect_garbage(&[]).await?;
        if removed > 0 {
            done.push(format!(
                "removed {removed} pod veths with their routes and rules"
            ));
        }
        // The per-ENI tables (shared mode): their default routes via the ENIs' gateways.
        let host = Netlink::current()?;
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            for r in host.routes(family, None).await? {
                // Only a table that is an ENI's (1000 + the ifindex it routes out of).
                if r.table > names::ENI_TABLE_BASE && eni_ifindex(r.table) == r.oif {
                    host.delete_route(&r).await?;
                    done.push(format!(
                        "removed route {} from ENI table {}",
                        r.dst, r.table
                    ));
                }
            }
        }
        if let Some(line) = unicni_bpf::uninstall(Path::new(&c.bpf.pin_dir))
            .map_err(|e| Error::Kernel(Box::new(e)))?
        {
            done.push(line);
        }
        remove(&socket_path(Path::new(&c.node.run_dir)), &mut done)?;
        if opts.release_cloud {
            self.release_cloud(&mut done).await?;
        }
        // The agent's allocations: without its pods and its socket they describe nothing
        // a new agent could use (it rebuilds from the cloud's view).
        let state = StateFile::new(Path::new(&c.node.state_dir));
        if let Some(dir) = state.path().parent() {
            remove(dir, &mut done)?;
        }
        Ok(done)
    }
}

/// Removes `path` (a file or a whole directory) and reports it when there was one.
fn remove(path: &Path, done: &mut Vec<String>) -> Result<()> {
    if unicni_fsutil::remove_if_present(path)? {
        done.push(format!("removed {}", path.display()));
    }
    Ok(())
}

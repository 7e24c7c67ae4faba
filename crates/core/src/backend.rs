//! The plugin half of a backend: its [`Ipam`] and [`Datapath`], composed into the CNI
//! operations. A backend provides the two parts and its readiness; add / del / check / gc
//! are the same for every backend, so that "a failed ADD leaves nothing" and "DEL is
//! idempotent" hold by construction, not by each backend's care.

use crate::{Attachment, AttachmentId, Datapath, Error, IpAssignment, Ipam, NetworkResult, Result};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The comparison table of DESIGN.md, as data: `plan`, `assess` and the docs read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub backend: String,
    pub modes: Vec<String>,
    /// Pod addresses are VPC addresses (routable without the node).
    pub pod_ips_from_vpc: bool,
    pub network_policy: bool,
    pub dual_stack: bool,
    pub fixed_ip: bool,
    pub per_pod_vswitch: bool,
    /// Traffic leaving the cluster keeps the pod's source address.
    pub preserves_source_ip: bool,
    /// The pod address range can grow after bootstrap.
    pub pod_cidr_can_grow: bool,
    /// Pods of two clusters in the same VPC reach each other.
    pub cross_cluster_in_vpc: bool,
    /// A load balancer can target pod addresses directly.
    pub lb_to_pod_direct: bool,
}

/// What STATUS reports for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStatus {
    Ready,
    /// Not ready yet, for the reason given; an ADD now would be told to retry.
    NotReady(String),
}

#[async_trait]
pub trait Backend: Send + Sync {
    fn ipam(&self) -> &dyn Ipam;
    fn datapath(&self) -> &dyn Datapath;

    /// Whether the node can take attachments now.
    async fn status(&self) -> Result<NodeStatus>;

    /// Whether `Ipam::allocate` itself answers `TryAgain` while the node is not ready, so
    /// ADD need not ask `status` first: for an IPAM behind an agent that is one round trip
    /// less on the plugin's hot path.
    fn allocate_checks_readiness(&self) -> bool {
        false
    }

    /// ADD: reserve, then wire. A failure after the reservation releases it again, so a
    /// failed ADD leaves neither links nor reservations.
    async fn add(&self, att: &Attachment) -> Result<NetworkResult> {
        if !self.allocate_checks_readiness() {
            if let NodeStatus::NotReady(why) = self.status().await? {
                return Err(Error::TryAgain(why));
            }
        }
        self.datapath().prepare_node().await?;
        let ips = self.ipam().allocate(att).await?;
        crate::failpoint::hit("ipam-reserved");
        match self.datapath().setup(att, &ips).await {
            Ok(result) => Ok(result),
            Err(err) => {
                // Best effort: the original error is what the runtime must see.
                let _ = self.datapath().teardown(att).await;
                let _ = self.ipam().release(&att.id).await;
                Err(err)
            }
        }
    }

    /// DEL: unwire, then release. Succeeds when either is already gone.
    async fn del(&self, att: &Attachment) -> Result<()> {
        self.datapath().teardown(att).await?;
        self.ipam().release(&att.id).await
    }

    /// CHECK: the reservation exists, holds every address the runtime says it was given
    /// (`expected`, from prevResult; compared by address, the prefix length is the
    /// datapath's to check), and the datapath still matches it.
    async fn check(&self, att: &Attachment, expected: &[ipnet::IpNet]) -> Result<()> {
        let held: Vec<IpAssignment> = self.ipam().held(&att.id).await?;
        if held.is_empty() {
            return Err(Error::UnknownAttachment(format!(
                "no address is reserved for {}",
                att.id
            )));
        }
        if let Some(addr) = expected
            .iter()
            .find(|a| !held.iter().any(|h| h.address.addr() == a.addr()))
        {
            return Err(Error::CheckFailed(format!(
                "prevResult lists {addr} but {} holds {:?}",
                att.id,
                held.iter().map(|h| h.address).collect::<Vec<_>>()
            )));
        }
        self.datapath().check(att, &held).await
    }

    /// GC: release every reservation and host leftover not in `valid`. Returns how many
    /// reservations were released.
    async fn gc(&self, valid: &[AttachmentId]) -> Result<usize> {
        // One release per attachment, however many addresses it holds.
        let stale: BTreeSet<AttachmentId> = self
            .ipam()
            .list()
            .await?
            .into_iter()
            .map(|a| a.id)
            .filter(|id| !valid.contains(id))
            .collect();
        for id in &stale {
            self.ipam().release(id).await?;
        }
        let released = stale.len();
        self.ipam().collect_garbage().await?;
        self.datapath().collect_garbage(valid).await?;
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Allocation;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Fake {
        released: Mutex<Vec<AttachmentId>>,
        swept: Mutex<Vec<Vec<AttachmentId>>>,
    }

    #[async_trait]
    impl Ipam for Fake {
        async fn allocate(&self, _att: &Attachment) -> Result<Vec<IpAssignment>> {
            unreachable!()
        }
        async fn held(&self, _id: &AttachmentId) -> Result<Vec<IpAssignment>> {
            Ok(vec![IpAssignment {
                address: "10.0.0.5/24".parse().unwrap(),
                gateway: None,
            }])
        }
        async fn release(&self, id: &AttachmentId) -> Result<()> {
            self.released.lock().unwrap().push(id.clone());
            Ok(())
        }
        async fn list(&self) -> Result<Vec<Allocation>> {
            let a = |ip: &str, c: &str| Allocation {
                address: ip.parse().unwrap(),
                id: AttachmentId::new(c, "eth0"),
            };
            Ok(vec![
                a("10.0.0.5", "keep"),
                a("10.0.0.6", "gone"),
                a("fd00::6", "gone"),
            ])
        }
    }

    #[async_trait]
    impl Datapath for Fake {
        async fn prepare_node(&self) -> Result<()> {
            Ok(())
        }
        async fn setup(&self, _att: &Attachment, _ips: &[IpAssignment]) -> Result<NetworkResult> {
            unreachable!()
        }
        async fn teardown(&self, _att: &Attachment) -> Result<()> {
            Ok(())
        }
        async fn check(&self, _att: &Attachment, _ips: &[IpAssignment]) -> Result<()> {
            Ok(())
        }
        async fn collect_garbage(&self, valid: &[AttachmentId]) -> Result<usize> {
            self.swept.lock().unwrap().push(valid.to_vec());
            Ok(0)
        }
    }

    struct FakeBackend(Fake);

    #[async_trait]
    impl Backend for FakeBackend {
        fn ipam(&self) -> &dyn Ipam {
            &self.0
        }
        fn datapath(&self) -> &dyn Datapath {
            &self.0
        }
        async fn status(&self) -> Result<NodeStatus> {
            Ok(NodeStatus::Ready)
        }
    }

    #[tokio::test]
    async fn gc_releases_each_stale_attachment_once_and_sweeps_the_host() {
        let b = FakeBackend(Fake::default());
        let keep = [AttachmentId::new("keep", "eth0")];
        assert_eq!(b.gc(&keep).await.unwrap(), 1);
        assert_eq!(
            *b.0.released.lock().unwrap(),
            vec![AttachmentId::new("gone", "eth0")]
        );
        assert_eq!(*b.0.swept.lock().unwrap(), vec![keep.to_vec()]);
    }

    #[tokio::test]
    async fn check_compares_addresses_not_prefix_lengths() {
        let b = FakeBackend(Fake::default());
        let att = Attachment {
            id: AttachmentId::new("keep", "eth0"),
            netns: None,
            pod: Default::default(),
        };
        b.check(&att, &["10.0.0.5/32".parse().unwrap()])
            .await
            .unwrap();
        let err = b
            .check(&att, &["10.0.0.7/24".parse().unwrap()])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::CheckFailed(_)), "{err}");
    }
}

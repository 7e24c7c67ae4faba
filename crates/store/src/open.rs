//! The one way to open the cluster store a config names: file, etcd or Kubernetes.
//!
//! Every subcommand that reads or writes cluster-wide state (install, lock, uninstall,
//! the agent, the lab) opens it here, so that each store kind works everywhere or nowhere.

use crate::{EtcdStore, FileStore, KubeStore};
use std::path::Path;
use std::sync::Arc;
use unicni_config::{StoreConfig, StoreKind};
use unicni_core::{Result, Store};

/// Where the Kubernetes store keeps its records (the cluster lock's ConfigMap).
pub const KUBE_NAMESPACE: &str = "kube-system";

/// An open store with its concrete handle, for callers that need more than [`Store`]:
/// the agent's leases use etcd's TTLs and the Kubernetes client's Node objects.
#[derive(Clone)]
pub enum Opened {
    File(FileStore),
    Etcd(Box<EtcdStore>),
    Kubernetes(Box<KubeHandle>),
}

/// The Kubernetes store and the client it was made with (Node objects, pods).
#[derive(Clone)]
pub struct KubeHandle {
    pub store: KubeStore,
    pub client: kube::Client,
}

impl Opened {
    /// The plain key-value view (the lock, reservations).
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Opened::File(s) => Arc::new(s.clone()),
            Opened::Etcd(s) => Arc::new(EtcdStore::clone(s)),
            Opened::Kubernetes(k) => Arc::new(k.store.clone()),
        }
    }
}

/// Opens the store `c` names and, for etcd, checks that it answers. Call inside the
/// runtime that will use the store (etcd and Kubernetes keep a connection).
pub async fn connect(c: &StoreConfig) -> Result<Opened> {
    Ok(match c.kind {
        StoreKind::File => Opened::File(FileStore::new(&c.path)),
        StoreKind::Etcd => {
            Opened::Etcd(Box::new(EtcdStore::connect(&c.endpoints, &c.prefix).await?))
        }
        StoreKind::Kubernetes => {
            let client = crate::kube::client(c.kubeconfig.as_deref().map(Path::new)).await?;
            Opened::Kubernetes(Box::new(KubeHandle {
                store: KubeStore::new(client.clone(), KUBE_NAMESPACE),
                client,
            }))
        }
    })
}

/// Opens the store `c` names, as a [`Store`].
pub async fn open(c: &StoreConfig) -> Result<Arc<dyn Store>> {
    Ok(connect(c).await?.store())
}

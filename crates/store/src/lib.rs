//! Cluster store implementations behind [`unicni_core::Store`].

pub mod file;

pub use file::FileStore;
pub mod etcd;

pub use etcd::{EtcdStore, LeasedCreate};
pub mod kube;
pub mod node_condition;

pub use kube::{Cache, KubeNodes, KubeStore, NodeLease};
pub mod open;

pub use open::{connect, open, KubeHandle, Opened, KUBE_NAMESPACE};

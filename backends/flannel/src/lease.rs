//! Node subnet leases in the cluster store.
//!
//! A lease is the key `flannel/subnets/<net>-<len>` created with the store's create-only
//! primitive, so two nodes can never hold the same subnet; a node that already holds one
//! gets the same subnet back.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use unicni_core::{CreateOutcome, Error, Result, Store};

pub const PREFIX: &str = "flannel/subnets/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Lease {
    pub subnet: String,
    pub node: String,
    /// The node's underlay (VPC) address: where peers send its pods' traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    /// The MAC of the node's vxlan device (vxlan mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac: Option<String>,
    /// The datapath mode the node runs (`vxlan`, `host-gw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Seconds since the epoch after which the lease is void unless renewed (stores
    /// without native TTLs; etcd deletes the key itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

pub fn key(subnet: &IpNet) -> String {
    format!("{PREFIX}{}-{}", subnet.network(), subnet.prefix_len())
}

/// Returns the subnet `node` holds, taking the first free one if it holds none.
pub async fn acquire(
    store: &dyn Store,
    network: IpNet,
    subnet_len: u8,
    node: &str,
) -> Result<IpNet> {
    let mut taken = HashSet::new();
    for (k, v) in store.list(PREFIX).await? {
        if let Ok(l) = serde_json::from_slice::<Lease>(&v) {
            if l.node == node {
                if let Ok(s) = l.subnet.parse() {
                    return Ok(s);
                }
            }
        }
        taken.insert(k);
    }
    let subnets = network.subnets(subnet_len).map_err(|_| {
        Error::InvalidConfig(format!(
            "subnet length /{subnet_len} does not fit network {network}"
        ))
    })?;
    for s in subnets {
        let k = key(&s);
        if taken.contains(&k) {
            continue;
        }
        let lease = Lease {
            subnet: s.to_string(),
            node: node.to_string(),
            ..Lease::default()
        };
        let body = serde_json::to_vec(&lease).expect("lease serializes");
        if store.create(&k, &body).await? == CreateOutcome::Created {
            return Ok(s);
        }
    }
    Err(Error::Exhausted(format!(
        "cluster network {network} has no free /{subnet_len} subnet for node {node:?}: every \
         subnet is leased ({} leases in {}); remove leases of nodes that left",
        taken.len(),
        store.describe()
    )))
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use async_trait::async_trait;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Mem(Mutex<BTreeMap<String, Vec<u8>>>);

    #[async_trait]
    impl Store for Mem {
        fn describe(&self) -> String {
            "memory".into()
        }
        async fn get(&self, k: &str) -> Result<Option<Vec<u8>>> {
            Ok(self.0.lock().unwrap().get(k).cloned())
        }
        async fn create(&self, k: &str, v: &[u8]) -> Result<CreateOutcome> {
            let mut m = self.0.lock().unwrap();
            if let Some(e) = m.get(k) {
                return Ok(CreateOutcome::Exists(e.clone()));
            }
            m.insert(k.into(), v.into());
            Ok(CreateOutcome::Created)
        }
        async fn put(&self, k: &str, v: &[u8]) -> Result<()> {
            self.0.lock().unwrap().insert(k.into(), v.into());
            Ok(())
        }
        async fn delete(&self, k: &str) -> Result<()> {
            self.0.lock().unwrap().remove(k);
            Ok(())
        }
        async fn list(&self, p: &str) -> Result<Vec<(String, Vec<u8>)>> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.starts_with(p))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::Mem;
    use super::*;

    #[tokio::test]
    async fn nodes_get_distinct_subnets_and_keep_them() {
        let s = Mem::default();
        let net: IpNet = "172.16.0.0/20".parse().unwrap();
        let a = acquire(&s, net, 24, "a").await.unwrap();
        let b = acquire(&s, net, 24, "b").await.unwrap();
        assert_ne!(a, b);
        assert_eq!(acquire(&s, net, 24, "a").await.unwrap(), a);
    }

    #[tokio::test]
    async fn exhaustion_is_a_clear_error() {
        let s = Mem::default();
        let net: IpNet = "172.16.0.0/20".parse().unwrap();
        for n in 0..16 {
            acquire(&s, net, 24, &format!("n{n}")).await.unwrap();
        }
        let e = acquire(&s, net, 24, "late").await.unwrap_err();
        assert!(matches!(e, Error::Exhausted(_)), "{e}");
        assert!(e.to_string().contains("late"));
    }
}

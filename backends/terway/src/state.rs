//! What the agent must not forget across restarts: which pod holds which address, and
//! which fixed addresses are on hold. Written atomically after every change, so a crash
//! at any point leaves either the old or the new file, never half of one.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use unicni_core::{AttachmentId, Error, PodRef, Result};

/// One pod's addresses (shared) or ENI (exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub id: AttachmentId,
    pub pod: PodRef,
    pub netns: Option<String>,
    pub eni_id: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// Goes on hold instead of back to the pool when released.
    pub fixed: bool,
}

/// A fixed-IP pod's addresses, kept for the pod's namespace/name until `until_unix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub eni_id: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub until_unix: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// Keyed by `AttachmentId`'s display form (`container/ifname`).
    pub allocations: BTreeMap<String, Held>,
    /// Keyed by `namespace/name`.
    pub holds: BTreeMap<String, Hold>,
    /// Whether this node hands out addresses from delegated prefixes: fixed when the
    /// node first joins (`None` in state files written before prefix mode existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_mode: Option<bool>,
    /// Prefix mode: each ENI's delegated prefixes as last seen, keyed by ENI ID. The
    /// cloud's view replaces it at start; it is a record for `status` and recovery.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prefixes: BTreeMap<String, Vec<IpNet>>,
}

pub fn pod_key(pod: &PodRef) -> Option<String> {
    Some(format!(
        "{}/{}",
        pod.namespace.as_deref()?,
        pod.name.as_deref()?
    ))
}

impl NodeState {
    /// Whether `ip` belongs to a pod or a hold.
    pub fn owns_v4(&self, ip: Ipv4Addr) -> bool {
        self.allocations.values().any(|h| h.ipv4 == Some(ip))
            || self.holds.values().any(|h| h.ipv4 == Some(ip))
    }

    pub fn owns_v6(&self, ip: Ipv6Addr) -> bool {
        self.allocations.values().any(|h| h.ipv6 == Some(ip))
            || self.holds.values().any(|h| h.ipv6 == Some(ip))
    }

    /// Whether a pod or hold sits on `eni_id` (exclusive mode: the ENI is taken).
    pub fn owns_eni(&self, eni_id: &str) -> bool {
        self.allocations.values().any(|h| h.eni_id == eni_id)
            || self.holds.values().any(|h| h.eni_id == eni_id)
    }
}

/// The state file, `<state_dir>/terway/state.json`.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("terway").join("state.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> Result<NodeState> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Store(format!(
                    "{} is not a valid terway state file ({e}); move it away to start from the cloud's view",
                    self.path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NodeState::default()),
            Err(e) => Err(Error::io(format!("read {}", self.path.display()), e)),
        }
    }

    pub fn save(&self, st: &NodeState) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(st).map_err(|e| Error::Store(e.to_string()))?;
        Ok(unicni_fsutil::write_atomic(&self.path, &bytes, 0o644)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path());
        assert_eq!(f.load().unwrap(), NodeState::default());
        let mut st = NodeState::default();
        st.holds.insert(
            "ns/a".into(),
            Hold {
                eni_id: "eni-1".into(),
                ipv4: Some("10.0.0.5".parse().unwrap()),
                ipv6: None,
                until_unix: 5,
            },
        );
        f.save(&st).unwrap();
        assert_eq!(f.load().unwrap(), st);
        assert!(st.owns_v4("10.0.0.5".parse().unwrap()));
        assert!(st.owns_eni("eni-1"));
    }
}

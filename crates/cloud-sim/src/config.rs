//! The emulator's config file (TOML). Every field has a default, so an empty file gives a
//! region with two zones, one VPC, two vSwitches, a security group and one access key.

use crate::error::SimError;
use crate::faults::FaultConfig;
use crate::latency::Profile;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    pub region: String,
    /// Access keys the API accepts.
    pub credentials: Vec<AccessKey>,
    pub vpc: VpcSpec,
    pub vswitches: Vec<VSwitchSpec>,
    pub security_groups: Vec<String>,
    pub instances: Vec<InstanceSpec>,
    /// Instance-type ENI limits (YAML, the shape of testdata/cloud/instance-types.yaml);
    /// the built-in copy of that file when unset.
    pub instance_types_file: Option<String>,
    /// How long an ENI stays `Attaching` / `Detaching`.
    pub attach_delay_ms: u64,
    pub detach_delay_ms: u64,
    /// How long a deleted ENI stays `Deleting` before it disappears.
    pub delete_delay_ms: u64,
    /// How long a new route entry stays `Pending` (and a deleted one `Deleting`).
    pub route_pending_ms: u64,
    /// Custom route entries allowed per route table (the vendor's default is 200).
    pub route_table_quota: u32,
    /// Refuse a route-table change with `TaskConflict` while another one is in flight,
    /// as the VPC service does.
    pub route_table_serial: bool,
    /// Latency profile: `default` (no call latency, the delays above), `none` (nothing
    /// waits) or `realistic` (the vendor's figures; they replace the delays above). See
    /// docs/cloud.md, "Latency profiles".
    pub profile: Profile,
    /// Seed of the jitter drawn around each `realistic` figure (same seed, same calls in
    /// the same order: the same latencies).
    pub latency_seed: u64,
    /// Refuse a timestamp further than this from the emulator's clock.
    pub max_clock_skew_secs: u64,
    pub faults: FaultConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            region: "cn-hangzhou".into(),
            credentials: vec![AccessKey {
                access_key_id: "unicni-sim".into(),
                access_key_secret: "unicni-sim-secret".into(),
            }],
            vpc: VpcSpec::default(),
            vswitches: vec![
                VSwitchSpec {
                    id: "vsw-sim-a".into(),
                    zone: "cn-hangzhou-a".into(),
                    cidr: "192.168.0.0/24".into(),
                    ipv6_cidr: Some("2408:4000:1:100::/64".into()),
                },
                VSwitchSpec {
                    id: "vsw-sim-b".into(),
                    zone: "cn-hangzhou-b".into(),
                    cidr: "192.168.1.0/24".into(),
                    ipv6_cidr: Some("2408:4000:1:101::/64".into()),
                },
            ],
            security_groups: vec!["sg-sim".into()],
            instances: Vec::new(),
            instance_types_file: None,
            attach_delay_ms: 300,
            detach_delay_ms: 300,
            delete_delay_ms: 300,
            route_pending_ms: 300,
            route_table_quota: 200,
            route_table_serial: true,
            profile: Profile::Default,
            latency_seed: 1,
            max_clock_skew_secs: 900,
            faults: FaultConfig::default(),
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKey {
    pub access_key_id: String,
    pub access_key_secret: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VpcSpec {
    pub id: String,
    pub cidr: String,
    pub route_table_id: String,
    pub router_id: String,
}

impl Default for VpcSpec {
    fn default() -> Self {
        Self {
            id: "vpc-sim".into(),
            cidr: "192.168.0.0/16".into(),
            route_table_id: "vtb-sim".into(),
            router_id: "vrt-sim".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VSwitchSpec {
    pub id: String,
    pub zone: String,
    pub cidr: String,
    #[serde(default)]
    pub ipv6_cidr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    pub id: String,
    pub instance_type: String,
    /// The vSwitch of the primary ENI; the instance's zone is that vSwitch's zone.
    pub vswitch_id: String,
    /// Primary IP of the primary ENI; the first free address when unset.
    #[serde(default)]
    pub primary_ip: Option<String>,
    /// Source addresses whose metadata requests see this instance (besides its primary
    /// IP). The lab lists each node namespace's address here.
    #[serde(default)]
    pub metadata_addresses: Vec<String>,
    /// Name of the RAM role whose STS credentials the metadata service hands out.
    #[serde(default)]
    pub ram_role: Option<String>,
}

impl SimConfig {
    pub fn load(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| SimError::Parse {
            path: path.into(),
            reason: e.to_string(),
        })
    }
}

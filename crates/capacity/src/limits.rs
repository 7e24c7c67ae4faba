//! Limits of the anchor platform that bound every plan. Sources: REFERENCE.md.

/// Nodes a cluster may have by default.
pub const CLUSTER_NODES_DEFAULT: u64 = 5_000;
/// Nodes a cluster may have after a quota increase.
pub const CLUSTER_NODES_MAX: u64 = 15_000;
/// VPC custom route entries per route table by default (vpc-route mode: one per node).
pub const ROUTE_TABLE_QUOTA_DEFAULT: u64 = 200;
/// Route entries the anchor grants at most, whatever the quota request.
pub const ROUTE_TABLE_QUOTA_MAX: u64 = 1_000;
/// The node subnet prefix lengths the anchor offers for flannel.
pub const NODE_SUBNET_LEN_RANGE: std::ops::RangeInclusive<u8> = 24..=28;
/// The anchor admits a node in shared-ENI mode only when it holds more pods than this.
pub const SHARED_ENI_MIN_PODS_EXCLUSIVE: u64 = 11;
/// Private IPv4 ranges a flannel cluster network must sit in.
pub const PRIVATE_V4: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

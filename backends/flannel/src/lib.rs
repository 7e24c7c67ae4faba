//! The flannel backend.
//!
//! Pod addresses come from a cluster CIDR independent of the VPC; each node holds one
//! fixed-size subnet of it (a lease). On the node, pods hang off a bridge through veth
//! pairs; the bridge holds the subnet's first address as the pods' gateway. Traffic to
//! other nodes' subnets takes the mode's path (vxlan, host-gw, vpc-route: programmed by
//! the agent); traffic leaving the cluster CIDR is masqueraded.

pub mod agent;
pub mod backend;
pub mod bridge;
pub mod hostgw;
pub mod ipam;
pub mod lease;
pub mod lease_store;
pub mod masq;
pub mod names;
pub mod netconf;
pub mod peers;
pub mod reconcile;
pub mod vpcroute;
pub mod vxlan;

pub use backend::FlannelBackend;
pub use netconf::FlannelNetConf;

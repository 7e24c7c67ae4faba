//! Capacity arithmetic shared by `unicni plan`, `unicni assess` and the backends.
//!
//! Everything here is pure: numbers in, numbers out. Where the numbers come from (the
//! built-in instance-type table, an override file, or the cloud API) is the caller's
//! choice; [`InstanceTypeTable::from_limits`] is the seam a cloud client feeds, and the
//! `cloud` feature's `cloud::describe` asks the cloud API through it.

pub mod capabilities;
#[cfg(feature = "cloud")]
pub mod cloud;
pub mod error;
pub mod flannel;
pub mod instance_types;
pub mod limits;
pub mod plan;
pub mod prefix;
pub mod render;
pub mod terway;
pub mod vswitch;

pub use error::CapacityError;
pub use instance_types::{InstanceTypeLimits, InstanceTypeTable};
pub use plan::{plan, NodeLimit, Plan, PlanInput, PodAddresses, PodsPerNode, TerwayPods};
pub use vswitch::VSwitch;

//! The core contract of unicni.
//!
//! Backends implement these interfaces; the binary wires a validated config to one
//! backend. Nothing in here knows about a particular backend, the CNI wire format or
//! the command line, so that every backend and every front end can depend on it.

pub mod attachment;
pub mod backend;
pub mod datapath;
pub mod error;
pub mod failpoint;
pub mod install;
pub mod ipam;
pub mod policy;
pub mod result;
pub mod store;

pub use attachment::{Attachment, AttachmentId, PodRef};
pub use backend::{Backend, Capabilities, NodeStatus};
pub use datapath::Datapath;
pub use error::{Error, Result};
pub use install::{
    ApiAccess, BackendModule, ConflistEntry, DeployNeeds, HostPathNeed, Install, UninstallOptions,
};
pub use ipam::{Allocation, IpAssignment, Ipam};
pub use policy::Policy;
pub use result::{DnsConfig, InterfaceConfig, IpConfig, NetworkResult, RouteConfig};
pub use store::{CreateOutcome, Store};
pub mod node;
pub use node::{NodeAgent, NodeCapacity, NodeContext, Readiness, Readout};
pub use policy::PolicyStatus;

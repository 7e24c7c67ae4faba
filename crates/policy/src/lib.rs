//! Kubernetes `networking.k8s.io/v1` NetworkPolicy for unicni, before any datapath:
//!
//! - [`model`]: pods, namespaces and policies, validated, with the API's defaults applied;
//! - [`selector`]: label selectors;
//! - [`evaluate`](mod@evaluate): the reference semantics, one flow at a time;
//! - [`compile`](mod@compile): per local pod address and direction, the isolation bit and a flat list of
//!   allow entries, the shape the eBPF maps take (see its documentation);
//! - [`manifests`]: a snapshot from a directory of YAML manifests.
//!
//! See docs/policy.md.

pub mod compile;
pub mod error;
pub mod evaluate;
pub mod manifests;
pub mod model;
pub mod selector;

pub use compile::{compile, compile_where, AllowEntry, Compiled, DirectionRules, Remote};
pub use error::{Error, Result};
pub use evaluate::{evaluate, Verdict};
pub use manifests::{load_str, ManifestDir};
pub use model::{Direction, Namespace, Pod, Policy, PortRange, Protocol, Snapshot};
pub use selector::{Labels, Selector};

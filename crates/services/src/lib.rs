//! ClusterIP Service load balancing in eBPF, at the socket layer (docs/services.md).
//!
//! Two halves:
//! - [`ServiceTable`]: what the load balancer should do, built from Kubernetes `Service`
//!   and `EndpointSlice` objects ([`ServiceTable::from_objects`]) or entry by entry
//!   ([`ServiceTable::insert`], for benchmarks and tests). One entry per frontend (a
//!   ClusterIP, port and protocol) with its backends and session affinity.
//! - [`Lb`]: the node's load balancer in the kernel (programs on the root cgroup v2, maps
//!   pinned under `<pin dir>/services/`, see `unicni_bpf::services`). [`Lb::apply`] writes a
//!   table as a diff, [`Lb::register_pod`] puts a pod's network namespace in scope (only
//!   registered namespaces are load balanced), [`Lb::status`] counts for metrics.
//!
//! The agent calls [`Lb::load`] at start and [`Lb::apply`] on every change of its
//! Services/EndpointSlices; the CNI plugin calls [`Lb::open`] and
//! [`Lb::register_pod`]/[`Lb::unregister_pod`] at ADD/DEL. `unicni uninstall` removes it
//! all with the rest of the pin directory (`unicni_bpf::remove_all`), or [`Lb::unload`].

mod error;
mod lb;
mod model;

pub use error::Error;
pub use lb::{ApplyReport, Lb, LbStatus};
pub use model::{
    Backend, BackendState, Frontend, Protocol, ServiceEntry, ServiceTable, Skipped,
    DEFAULT_AFFINITY_TIMEOUT,
};
pub use unicni_bpf::services::ServiceStats;

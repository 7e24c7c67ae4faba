//! Can a cluster move from one unicni backend to the other, what blocks it, and how.
//!
//! The input is an [`Inventory`]: a versioned, documented snapshot of the cluster (nodes,
//! pods, services, network policies, the cloud's vSwitches and route-table budget). It is
//! read from a file or built from a live cluster by the binary. [`assess`] runs every
//! check on it and returns a [`Report`]: findings with severity, a verdict and an ordered
//! migration path. Renderers turn the report into a table, JSON, YAML or Markdown.

pub mod checks;
pub mod context;
pub mod error;
pub mod finding;
pub mod inventory;
pub mod kubectl;
#[cfg(feature = "live")]
pub mod live;
pub mod path;
pub mod render;
pub mod report;
pub mod suggest;

pub use checks::CheckId;
pub use context::{Options, Target};
pub use error::AssessError;
pub use finding::{CheckResult, Finding, Severity, Status};
pub use inventory::Inventory;
pub use report::{assess, FailOn, Report, Verdict};

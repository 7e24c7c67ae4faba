//! The one config file of a unicni cluster.
//!
//! One file (TOML or YAML) describes the cluster, the backend and its mode, the store and
//! the node. Every key can be overridden by an environment variable: `UNICNI_` followed by
//! the key path with `__` between sections, e.g. `UNICNI_FLANNEL__MODE=host-gw`.
//!
//! Fields fall in three classes (see [`lock`]): immutable for the life of the cluster,
//! append-only, and mutable.

pub mod error;
pub mod load;
pub mod lock;
pub mod schema;
pub mod validate;

pub use error::{ConfigError, FieldError};
pub use load::{load, load_str, Format};
pub use lock::{Drift, LockRecord};
pub use schema::*;

//! The CNI specification's wire format (spec 1.1, with 0.3.x/0.4.0/1.0.0 configs).
//!
//! Parsing only: what the plugin does with a request is the backend's business. Every
//! failure is a [`CniError`] carrying the spec's error code, so the binary can print the
//! error JSON the runtime expects on stdout.

pub mod args;
pub mod env;
pub mod error;
pub mod netconf;
pub mod result;
pub mod version;

pub use args::CniArgs;
pub use env::{Command, Request};
pub use error::{code, CniError};
pub use netconf::NetConf;
pub use version::{LATEST, SUPPORTED_VERSIONS};

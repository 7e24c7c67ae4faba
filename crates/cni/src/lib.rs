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

/// The spec's rule for network names and container IDs: an ASCII letter or digit first,
/// then letters, digits, `_`, `.` or `-`. Both become file names, so this also keeps out
/// "", ".", ".." and '/'.
pub fn is_spec_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

//! Spec error codes and the error JSON.

use serde::Serialize;
use std::fmt;

/// Error codes of the CNI spec (0-99) and unicni's own (100+).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const NOT_AVAILABLE_DEGRADED: u32 = 51;
    /// No free address in the node's range.
    pub const ADDRESSES_EXHAUSTED: u32 = 100;
    /// The interface to create already exists in the container.
    pub const INTERFACE_EXISTS: u32 = 101;
    /// CHECK found the attachment differs from what ADD set up.
    pub const CHECK_FAILED: u32 = 102;
    /// A kernel operation (netlink, sysctl, nftables) failed.
    pub const KERNEL_FAILURE: u32 = 103;
    /// The cluster store failed.
    pub const STORE_FAILURE: u32 = 104;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The error object the spec defines, for printing on stdout.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_string(&Wire {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        })
        .expect("plain struct serializes")
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[code {}] {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

impl From<unicni_core::Error> for CniError {
    fn from(e: unicni_core::Error) -> Self {
        use unicni_core::Error as E;
        let c = match &e {
            E::InvalidConfig(_) => code::INVALID_CONFIG,
            E::TryAgain(_) => code::TRY_AGAIN,
            E::Unavailable(_) => code::NOT_AVAILABLE,
            E::Exhausted(_) => code::ADDRESSES_EXHAUSTED,
            E::AlreadyExists(_) => code::INTERFACE_EXISTS,
            E::UnknownAttachment(_) => code::UNKNOWN_CONTAINER,
            E::CheckFailed(_) => code::CHECK_FAILED,
            E::Io { .. } => code::IO_FAILURE,
            E::Kernel(_) => code::KERNEL_FAILURE,
            E::Store(_) => code::STORE_FAILURE,
        };
        CniError::new(c, e.to_string(), "")
    }
}

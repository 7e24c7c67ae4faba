//! Errors every backend reports through the core interfaces.
//!
//! The variants are the classes a front end needs to tell apart (a CNI plugin maps them
//! to spec error codes); the message always names the object and what to do.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    /// The configuration handed to the backend is not usable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The node is not ready yet (no lease, agent down); the caller may retry.
    #[error("not ready, try again later: {0}")]
    TryAgain(String),
    /// The backend cannot serve at all on this node.
    #[error("backend not available: {0}")]
    Unavailable(String),
    /// No address left in the range the attachment may use.
    #[error("address space exhausted: {0}")]
    Exhausted(String),
    /// The attachment, or something it needs, already exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The attachment is unknown (CHECK on something never added).
    #[error("unknown attachment: {0}")]
    UnknownAttachment(String),
    /// CHECK found the attachment's state differs from what was set up.
    #[error("check failed: {0}")]
    CheckFailed(String),
    /// Reading or writing local state failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A kernel operation (netlink, nftables, sysctl) failed.
    #[error("{0}")]
    Kernel(String),
    /// The cluster store refused or failed an operation.
    #[error("store: {0}")]
    Store(String),
}

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

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
    /// A kernel operation (netlink, nftables, sysctl, eBPF) failed. The mechanism's own
    /// error is kept whole (its message names the operation and the object; its source
    /// chain and errno stay reachable): mechanism crates implement `From<TheirError>`.
    #[error(transparent)]
    Kernel(Box<dyn std::error::Error + Send + Sync + 'static>),
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

    /// A kernel failure described by `message` alone (nothing underneath to keep).
    pub fn kernel(message: impl Into<String>) -> Self {
        Error::Kernel(message.into().into())
    }

    /// A kernel failure: `what` was being done when `source` failed. Shows as
    /// `{what}: {source}`, and `source` stays the error's source.
    pub fn kernel_in(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Kernel(Box::new(KernelContext {
            what: what.into(),
            source: Box::new(source),
        }))
    }
}

/// A failed atomic write is a local-state I/O error naming the step and the file.
impl From<unicni_fsutil::WriteError> for Error {
    fn from(e: unicni_fsutil::WriteError) -> Self {
        Error::io(format!("{} {}", e.step, e.path.display()), e.source)
    }
}

#[derive(Debug, Error)]
#[error("{what}: {source}")]
struct KernelContext {
    what: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    const ENOENT: i32 = 2;

    #[test]
    fn kernel_in_keeps_message_and_source() {
        let io = std::io::Error::from_raw_os_error(ENOENT);
        let e = Error::kernel_in("attach eth0", io);
        assert!(e.to_string().starts_with("attach eth0: "), "{e}");
        // Transparent: the kernel error's source is the context's source, the io error.
        let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(io.and_then(|e| e.raw_os_error()), Some(ENOENT));
    }

    #[test]
    fn kernel_message_shows_as_is() {
        assert_eq!(
            Error::kernel("veth0 vanished").to_string(),
            "veth0 vanished"
        );
    }
}

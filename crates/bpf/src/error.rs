//! Errors of the loader. The agent needs to tell "BPF cannot be used on this node" (fall back
//! to the routing datapath or refuse readiness) from ordinary failures: see
//! [`BpfError::is_unavailable`].

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The pin directory is not on a BPF filesystem and one could not be mounted.
    #[error(
        "no BPF filesystem for {path}: {detail}; mount one (`mount -t bpf bpf /sys/fs/bpf`, \
         needs CAP_SYS_ADMIN) or choose a pin directory under a bpffs mount"
    )]
    NoBpffs { path: PathBuf, detail: String },

    /// The kernel refused a BPF operation for lack of privilege.
    #[error(
        "permission denied while trying to {op}: {source}; the eBPF fast path needs CAP_BPF, \
         CAP_NET_ADMIN and CAP_SYS_ADMIN (run the agent as root)"
    )]
    PermissionDenied {
        op: String,
        #[source]
        source: io::Error,
    },

    /// The kernel's verifier refused a program.
    #[error(
        "the kernel verifier rejected eBPF program {program} ({source}); this kernel cannot \
         run it, use the datapath without the eBPF fast path. Verifier log:\n{log}"
    )]
    Verifier {
        program: String,
        log: String,
        #[source]
        source: io::Error,
    },

    /// Nothing is pinned where the agent would have pinned it.
    #[error(
        "the eBPF fast path is not loaded: {path} does not exist; the node agent loads it \
         at start (or disable the fast path)"
    )]
    NotLoaded { path: PathBuf },

    #[error("network interface with index {ifindex} does not exist in this network namespace")]
    NoSuchInterface { ifindex: u32 },

    /// `unicni uninstall` could not remove what is pinned under `pin_dir`.
    #[error(
        "remove the eBPF programs pinned at {} (remove the directory by hand): {source}",
        pin_dir.display()
    )]
    Uninstall {
        pin_dir: PathBuf,
        #[source]
        source: Box<BpfError>,
    },

    /// Any other failure of a BPF or netlink operation.
    #[error("failed to {op}: {detail}")]
    Kernel { op: String, detail: String },
}

pub type Result<T, E = BpfError> = std::result::Result<T, E>;

impl BpfError {
    /// True when eBPF cannot be used on this node at all (no bpffs, no privilege, verifier
    /// refusal): the caller should fall back to the datapath without the fast path, or refuse
    /// readiness, instead of retrying.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            BpfError::NoBpffs { .. }
                | BpfError::PermissionDenied { .. }
                | BpfError::Verifier { .. }
        )
    }

    /// What an agent says when its fast path could not be loaded: whether eBPF cannot be
    /// used on this node at all ([`BpfError::is_unavailable`]) or loading failed, and why.
    pub fn load_failure(&self) -> String {
        let kind = if self.is_unavailable() {
            "eBPF cannot be used on this node"
        } else {
            "loading the eBPF fast path failed"
        };
        format!("{kind}: {self}")
    }

    /// Maps an aya (or io) error to a typed error: privilege problems anywhere in the source
    /// chain become [`BpfError::PermissionDenied`], the rest [`BpfError::Kernel`] with the
    /// whole chain in the message.
    pub(crate) fn from_err(op: impl Into<String>, err: &(dyn std::error::Error + 'static)) -> Self {
        let op = op.into();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                if matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
                    return BpfError::PermissionDenied {
                        op,
                        source: io::Error::from_raw_os_error(io.raw_os_error().unwrap_or(0)),
                    };
                }
            }
            cur = e.source();
        }
        BpfError::Kernel {
            op,
            detail: chain(err),
        }
    }
}

/// "outer: inner: innermost", skipping repeats (aya often repeats its source in Display).
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// The io::Error somewhere in the chain, if any (to read errno).
pub(crate) fn find_io<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = e.source();
    }
    None
}

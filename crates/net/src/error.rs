use thiserror::Error;

pub type Result<T, E = NetError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum NetError {
    /// A netlink request failed; `errno` is the kernel's answer when there was one.
    #[error("{op} {object}: {message}")]
    Netlink {
        op: &'static str,
        object: String,
        errno: Option<i32>,
        message: String,
    },
    #[error("network namespace {path}: {source}")]
    Netns {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nftables: {0}")]
    Nft(String),
}

impl NetError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetError::Netlink { errno, .. } => *errno,
            NetError::Netns { source, .. } | NetError::Io { source, .. } => source.raw_os_error(),
            NetError::Nft(_) => None,
        }
    }

    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ESRCH)
        )
    }

    pub(crate) fn netlink(
        op: &'static str,
        object: impl Into<String>,
        e: rtnetlink::Error,
    ) -> Self {
        let errno = match &e {
            rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
            _ => None,
        };
        let message = match errno {
            Some(n) => std::io::Error::from_raw_os_error(n).to_string(),
            None => e.to_string(),
        };
        NetError::Netlink {
            op,
            object: object.into(),
            errno,
            message,
        }
    }
}

/// A backend reports a failed kernel mechanism as the core's kernel error, with this
/// error kept as its source (errno and chain intact), so call sites just use `?`.
impl From<NetError> for unicni_core::Error {
    fn from(e: NetError) -> Self {
        unicni_core::Error::Kernel(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_error_shows_the_same_message_and_keeps_the_net_error() {
        let e = NetError::Netlink {
            op: "add route",
            object: "10.1.0.0/24 (netns host)".into(),
            errno: Some(libc::EEXIST),
            message: std::io::Error::from_raw_os_error(libc::EEXIST).to_string(),
        };
        let shown = e.to_string();
        let core: unicni_core::Error = e.into();
        assert_eq!(core.to_string(), shown);
        let unicni_core::Error::Kernel(inner) = &core else {
            panic!("not a kernel error: {core:?}");
        };
        let net = inner
            .downcast_ref::<NetError>()
            .expect("the NetError itself");
        assert!(net.is_exists());
    }
}

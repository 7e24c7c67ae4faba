//! Network namespaces: open one by path, and open a netlink socket inside it.

use crate::{NetError, Result};
use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// An open handle on a network namespace (a `/var/run/netns/X` or `/proc/PID/ns/net` file).
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    pub fn open(path: &Path) -> Result<NetNs> {
        let file = File::open(path).map_err(|source| NetError::Netns {
            path: path.display().to_string(),
            source,
        })?;
        // A regular file would make setns fail later with a confusing EINVAL; catch it here.
        let is_netns = nix::sys::statfs::fstatfs(&file)
            .map(|s| {
                let t = s.filesystem_type();
                t == nix::sys::statfs::NSFS_MAGIC || t == nix::sys::statfs::PROC_SUPER_MAGIC
            })
            .unwrap_or(false);
        if !is_netns {
            return Err(NetError::Netns {
                path: path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a network namespace file",
                ),
            });
        }
        Ok(NetNs {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// Runs `f` with the calling thread inside this namespace, on a dedicated thread so no
    /// other work (and no tokio worker) ever runs in the wrong namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
                    NetError::Netns {
                        path: self.path.display().to_string(),
                        source: std::io::Error::from(e),
                    }
                })?;
                Ok(f())
            })
            .join()
            .expect("namespace thread panicked")
        })
    }
}

/// Opens an `NETLINK_ROUTE` socket that lives in `ns`.
pub fn route_socket_in(ns: &NetNs) -> Result<OwnedFd> {
    ns.run(open_route_socket)?.map_err(|source| NetError::Io {
        what: format!("open netlink socket in {}", ns.path.display()),
        source,
    })
}

#[allow(unsafe_code)]
pub(crate) fn open_route_socket() -> std::io::Result<OwnedFd> {
    use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
    use std::os::fd::IntoRawFd;
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    // Connected to the kernel (port 0) so plain send(2) works without a destination.
    socket.connect(&SocketAddr::new(0, 0))?;
    // SAFETY: into_raw_fd hands over a valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(socket.into_raw_fd()) })
}

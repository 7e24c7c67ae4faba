//! Network namespaces: open one by path, and open a netlink socket inside it.

use crate::ifquery::IfQuery;
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
        // setns with CLONE_NEWNET fails late with a bare EINVAL on anything else, after the
        // caller may already have reserved an address: refuse other files here.
        check_is_netns(&file).map_err(|why| NetError::Netns {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
        })?;
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
                self.enter()?;
                Ok(f())
            })
            .join()
            .expect("namespace thread panicked")
        })
    }

    /// Moves the calling thread into this namespace: only ever a thread made for it.
    fn enter(&self) -> Result<()> {
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| NetError::Netns {
            path: self.path.display().to_string(),
            source: std::io::Error::from(e),
        })
    }

    /// Another handle on the same namespace (a duplicated descriptor).
    pub fn try_clone(&self) -> Result<NetNs> {
        Ok(NetNs {
            file: self.file.try_clone().map_err(|source| NetError::Netns {
                path: self.path.display().to_string(),
                source,
            })?,
            path: self.path.clone(),
        })
    }
}

/// Whether `file` is a network namespace: a namespace file (nsfs) whose type, asked with
/// `NS_GET_NSTYPE`, is `CLONE_NEWNET`. A namespace of another type (`/proc/self/ns/uts`)
/// lives on nsfs too, and any procfs or regular file fails the ioctl.
fn check_is_netns(file: &File) -> std::result::Result<(), String> {
    let fs = nix::sys::statfs::fstatfs(file).map_err(|e| format!("cannot stat it: {e}"))?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(
            "not a network namespace file (expected /var/run/netns/NAME or /proc/PID/ns/net)"
                .into(),
        );
    }
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the descriptor, which `file`
    // keeps open for the duration of the call.
    #[allow(unsafe_code)]
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), libc::NS_GET_NSTYPE) };
    if kind < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "cannot ask the namespace its type (NS_GET_NSTYPE): {e}"
        ));
    }
    if kind != libc::CLONE_NEWNET {
        return Err(format!(
            "a namespace of another type ({}), not a network namespace",
            ns_type_name(kind)
        ));
    }
    Ok(())
}

fn ns_type_name(kind: i32) -> &'static str {
    match kind {
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWNS => "mnt",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWUSER => "user",
        libc::CLONE_NEWCGROUP => "cgroup",
        libc::CLONE_NEWTIME => "time",
        _ => "unknown",
    }
}

/// A namespace's sockets for a [`crate::Netlink`]: netlink, and the datagram socket
/// link questions are asked on ([`IfQuery`]).
pub(crate) type Sockets = (OwnedFd, IfQuery);

/// Opens the sockets of `ns` on a dedicated thread that starts at once; the receiver
/// yields them. The caller goes on with other work meanwhile (the thread's start and the
/// namespace switch overlap it on another core).
pub(crate) fn sockets_in_background(
    ns: &NetNs,
) -> Result<tokio::sync::oneshot::Receiver<Result<Sockets>>> {
    let ns = ns.try_clone()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let path = ns.path.display().to_string();
    std::thread::Builder::new()
        .name("netns-socket".into())
        .spawn(move || {
            let opened = ns.enter().and_then(|()| open_sockets(&ns.path));
            let _ = tx.send(opened);
        })
        .map_err(|source| NetError::Io {
            what: format!("start a thread to enter {path}"),
            source,
        })?;
    Ok(rx)
}

/// The sockets of `ns`, opened on a dedicated thread.
pub(crate) fn sockets_in(ns: &NetNs) -> Result<Sockets> {
    ns.run(|| open_sockets(&ns.path))?
}

/// The calling thread's namespace's sockets; `place` names it in errors.
pub(crate) fn open_sockets(place: &Path) -> Result<Sockets> {
    let io = |source| NetError::Io {
        what: format!("open sockets in {}", place.display()),
        source,
    };
    Ok((
        open_route_socket().map_err(io)?,
        IfQuery::open().map_err(io)?,
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(path: &str) -> String {
        NetNs::open(Path::new(path)).unwrap_err().to_string()
    }

    #[test]
    fn own_network_namespace_opens() {
        NetNs::open(Path::new("/proc/self/ns/net")).unwrap();
    }

    #[test]
    fn namespace_of_another_type_is_refused_with_its_type() {
        let e = refusal("/proc/self/ns/uts");
        assert!(e.contains("/proc/self/ns/uts") && e.contains("uts"), "{e}");
        assert!(refusal("/proc/self/ns/ipc").contains("ipc"));
    }

    #[test]
    fn procfs_and_regular_files_are_refused() {
        for path in ["/proc/self/status", "/proc/self/ns", "/etc/hostname"] {
            let e = refusal(path);
            assert!(e.contains("not a network namespace"), "{path}: {e}");
        }
    }
}

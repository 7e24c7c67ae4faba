//! A named network namespace that lives as long as its guard.

use crate::names::unique;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A network namespace under `/var/run/netns` with a unique name, created by `ip netns
/// add` and deleted on drop. Only namespaces this guard created are ever deleted.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
    /// `/var/run/netns/<name>`, what a runtime passes as `CNI_NETNS`.
    pub path: String,
}

impl Netns {
    /// A namespace named `unt` + a unique suffix.
    pub fn new() -> Netns {
        Netns::with_prefix("unt")
    }

    /// A namespace named `prefix` + a unique suffix.
    pub fn with_prefix(prefix: &str) -> Netns {
        let name = unique(prefix);
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap_or_else(|e| panic!("cannot execute `ip netns add {name}`: {e}"));
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns {
            path: format!("/var/run/netns/{name}"),
            name,
        }
    }

    /// [`Netns::with_prefix`] with the loopback interface up, as a pod's runtime leaves it.
    pub fn with_lo_up(prefix: &str) -> Netns {
        let ns = Netns::with_prefix(prefix);
        let out = ns.exec(&["ip", "link", "set", "lo", "up"]);
        assert!(
            out.status.success(),
            "ip -n {} link set lo up: {}",
            ns.name,
            String::from_utf8_lossy(&out.stderr)
        );
        ns
    }

    pub fn path_buf(&self) -> PathBuf {
        PathBuf::from(&self.path)
    }

    /// Runs `f` on a new thread inside this namespace (see [`in_netns`]).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_netns(&self.name, f)
    }

    /// Runs a command inside the namespace (`ip netns exec`), whatever its exit status.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot execute `ip netns exec {}`: {e}", self.name))
    }

    /// One echo request to `target`, answered within two seconds.
    pub fn ping(&self, target: &str) -> bool {
        self.exec(&["ping", "-c", "1", "-W", "2", target])
            .status
            .success()
    }

    /// The names of the links in the namespace.
    pub fn links(&self) -> Vec<String> {
        let out = self.exec(&["ip", "-o", "link", "show"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .collect()
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Moves the calling thread into the network namespace `/var/run/netns/<name>`. Only for a
/// thread of its own that does nothing else afterwards (never a test's main thread, never
/// a tokio worker).
pub fn enter_netns(name: &str) {
    enter_netns_at(&Path::new("/var/run/netns").join(name));
}

/// [`enter_netns`] for a namespace given by path, such as `/proc/PID/ns/net` of a
/// container's process (a runtime's pods are not under `/var/run/netns`).
pub fn enter_netns_at(path: &Path) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("setns into {}: {e}", path.display()));
}

/// [`in_netns`] for a namespace given by path (see [`enter_netns_at`]).
pub fn in_netns_at<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        enter_netns_at(&path);
        f()
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Runs `f` on a new thread inside the named network namespace and returns its result; a
/// panic in `f` is resumed on the caller's thread, so the test fails with its message.
pub fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let name = name.to_string();
    std::thread::spawn(move || {
        enter_netns(&name);
        f()
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_exists_until_its_guard_is_dropped() {
        if !crate::require_root() {
            return;
        }
        let ns = Netns::with_lo_up("utk");
        let path = ns.path_buf();
        assert!(path.exists());
        assert_eq!(ns.links(), vec!["lo".to_string()]);
        let inside = ns.run(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap());
        assert_ne!(inside, std::fs::read_link("/proc/self/ns/net").unwrap());
        assert!(ns.ping("127.0.0.1"), "loopback is up");
        drop(ns);
        assert!(!path.exists(), "{} left behind", path.display());
    }

    #[test]
    fn a_panic_inside_is_the_callers_panic() {
        if !crate::require_root() {
            return;
        }
        let ns = Netns::new();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ns.run(|| panic!("inside the namespace"))
        }));
        let msg = caught.unwrap_err();
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"inside the namespace"));
    }
}

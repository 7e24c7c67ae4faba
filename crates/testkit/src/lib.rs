//! Dev-only helpers shared by unicni's tests, benches and lab: one copy of each instead of
//! one per test tree.
//!
//! - [`require_root`]: root-only tests skip for a developer without root, fail in CI.
//! - [`unique`] / [`unique_ifname`]: names that do not collide between the tests of one
//!   process nor between test processes running at the same time.
//! - [`Netns`]: a uniquely named network namespace, deleted on drop; [`in_netns`] runs
//!   code inside a named one on a thread of its own.
//! - [`CniRun`]: executes a CNI plugin the way a runtime does (environment, config on
//!   stdin) and returns its exit status and parsed result or error.
//! - [`KillOnDrop`], [`free_port`], [`wait_until`], [`Etcd`]: processes a test starts
//!   (an agent, a real etcd) and waiting for what they do.

pub mod cmd;
mod cni;
mod etcd;
mod launch;
mod names;
mod netns;
pub mod perf;
pub mod probe;
mod process;

pub use cni::{CniError, CniOutput, CniRun};
pub use etcd::Etcd;
pub use names::{unique, unique_ifname, IFNAME_MAX};
pub use netns::{enter_netns, enter_netns_at, in_netns, in_netns_at, Netns};
pub use process::{free_port, wait_until, KillOnDrop};

/// Whether a root-only test may run. Without root it returns false after a note on stderr
/// (a developer's unprivileged run skips), except under CI, where it panics: a CI run that
/// skipped every root test would prove nothing.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "root-only test run without root in CI"
    );
    eprintln!("skipping: needs root");
    false
}

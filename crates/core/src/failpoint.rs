//! Fault injection for crash tests: `UNICNI_FAILPOINT=<name>` makes the process stop at
//! the named point (it announces itself on stderr and sleeps until killed), so a test can
//! SIGKILL an operation at an exact step and prove that cleanup still works.
//!
//! Points: `ipam-reserved` (address reserved, nothing wired), `veth-created` (links exist,
//! pod side not configured).

/// Parks the process at `name` when the failpoint is armed; free otherwise.
pub fn hit(name: &str) {
    if std::env::var_os("UNICNI_FAILPOINT").is_some_and(|v| v == name) {
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

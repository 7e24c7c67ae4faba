//! Sysctls, written through /proc/sys of the calling thread's namespace.

use crate::{NetError, Result};

/// Writes `value` to sysctl `key` (dotted form, e.g. `net.ipv4.ip_forward`) unless it
/// already holds it, so that repeated calls cost one read.
pub fn ensure(key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    if std::fs::read_to_string(&path)
        .map(|v| v.trim() == value)
        .unwrap_or(false)
    {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(|source| NetError::Io {
        what: format!("set sysctl {key}={value}"),
        source,
    })
}

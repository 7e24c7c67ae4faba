//! nftables through the `nft` command: rules change rarely (node preparation, agent
//! reconcile), never on the per-pod path, so a process spawn is an acceptable cost.

use crate::{NetError, Result};
use std::io::Write;
use std::process::{Command, Stdio};

/// Applies an nft script atomically (`nft -f -` loads it as one transaction).
pub fn apply(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            NetError::Nft(format!(
                "cannot run nft (is the nftables package installed?): {e}"
            ))
        })?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| NetError::Nft(format!("write script to nft: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| NetError::Nft(format!("wait for nft: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Whether table `family name` exists.
pub fn table_exists(family: &str, name: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", family, name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Deletes table `family name`; a missing table is success.
pub fn delete_table(family: &str, name: &str) -> Result<()> {
    if !table_exists(family, name) {
        return Ok(());
    }
    apply(&format!("delete table {family} {name}\n"))
}

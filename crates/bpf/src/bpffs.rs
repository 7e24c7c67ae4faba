//! Making sure the pin directory lives on a BPF filesystem.

use crate::error::{BpfError, Result};
use std::path::{Path, PathBuf};

/// `BPF_FS_MAGIC` from <linux/magic.h>.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Where the kernel conventionally mounts bpffs; the only place this crate mounts one.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

// The f_type field is i64 here but narrower on some architectures.
#[allow(clippy::useless_conversion)]
pub fn is_bpffs(path: &Path) -> bool {
    match nix::sys::statfs::statfs(path) {
        Ok(s) => i64::from(s.filesystem_type().0) == BPF_FS_MAGIC,
        Err(_) => false,
    }
}

fn existing_ancestor(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            return PathBuf::from("/");
        }
    }
    p
}

/// Creates `dir` on bpffs, mounting bpffs at /sys/fs/bpf first when `dir` is under it and
/// nothing is mounted there yet (a fresh VM, or a container without the host's mount).
pub fn ensure_dir(dir: &Path) -> Result<()> {
    if !is_bpffs(&existing_ancestor(dir)) {
        let root = Path::new(BPFFS_ROOT);
        if !dir.starts_with(root) {
            return Err(BpfError::NoBpffs {
                path: dir.to_path_buf(),
                detail: format!(
                    "{} is not on a bpf filesystem",
                    existing_ancestor(dir).display()
                ),
            });
        }
        mount_bpffs(root)?;
    }
    std::fs::create_dir_all(dir).map_err(|e| BpfError::NoBpffs {
        path: dir.to_path_buf(),
        detail: format!("cannot create the directory: {e}"),
    })
}

fn mount_bpffs(root: &Path) -> Result<()> {
    if !root.is_dir() {
        return Err(BpfError::NoBpffs {
            path: root.to_path_buf(),
            detail: "the mount point does not exist (is /sys mounted?)".into(),
        });
    }
    nix::mount::mount(
        Some("bpf"),
        root,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        Some("mode=0700"),
    )
    .map_err(|e| BpfError::NoBpffs {
        path: root.to_path_buf(),
        detail: format!("nothing mounted there and mounting bpffs failed: {e}"),
    })?;
    tracing::info!(path = %root.display(), "mounted bpffs");
    if is_bpffs(root) {
        Ok(())
    } else {
        Err(BpfError::NoBpffs {
            path: root.to_path_buf(),
            detail: "mounted bpffs but the directory still is not on it".into(),
        })
    }
}

//! File primitives every part of unicni shares: replacing a file so that a reader (the
//! container runtime, the plugin, the next agent start) sees the old or the new contents,
//! never a half-written one, and a crash leaves no temporary file behind.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A failed atomic write: which step, on which path, and the kernel's reason.
#[derive(Debug, thiserror::Error)]
#[error("{step} {}: {source}", path.display())]
pub struct WriteError {
    /// What was being done ("create directory", "write", "rename into place").
    pub step: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, written,
/// given `mode`, synced, then renamed over `path`. Creates the directory when missing. On
/// error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), WriteError> {
    let fail = |step: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| WriteError {
            step,
            path: p,
            source,
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(fail("create directory", dir))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("unicni");
    let tmp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), unique()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(fail("create", &tmp))?;
        f.write_all(contents).map_err(fail("write", &tmp))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(fail("set the mode of", &tmp))?;
        f.sync_all().map_err(fail("sync", &tmp))?;
        std::fs::rename(&tmp, path).map_err(fail("rename into place", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Distinguishes concurrent writers within one process (threads of an agent).
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_contents_and_mode_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("unicni-fsutil-{}", std::process::id()));
        let path = dir.join("sub/file.json");
        write_atomic(&path, b"old", 0o600).unwrap();
        write_atomic(&path, b"new", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "only the file itself: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_names_the_path_and_keeps_the_old_file() {
        let dir = std::env::temp_dir().join(format!("unicni-fsutil-fail-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("target-is-a-dir")).unwrap();
        std::fs::write(dir.join("target-is-a-dir/x"), b"keep").unwrap();
        let err = write_atomic(&dir.join("target-is-a-dir"), b"new", 0o644).unwrap_err();
        assert_eq!(err.step, "rename into place");
        assert!(err.to_string().contains("target-is-a-dir"), "{err}");
        assert_eq!(
            std::fs::read(dir.join("target-is-a-dir/x")).unwrap(),
            b"keep"
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

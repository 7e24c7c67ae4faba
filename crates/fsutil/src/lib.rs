//! File primitives every part of unicni shares: replacing a file so that a reader (the
//! container runtime, the plugin, the next agent start) sees the old or the new contents,
//! never a half-written one, and a crash leaves no temporary file behind.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A failed file operation (an atomic write's step, or a removal): which step, on which
/// path, and the kernel's reason.
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
    replace(path, contents, mode, Sync::Yes)
}

/// [`write_atomic`] without the sync: a killed process still leaves the old or the new
/// contents (the page cache holds what was written), but a power loss may leave either,
/// or an empty file. Only for state that a reboot voids anyway (what describes the pods
/// running on this node), where the sync would cost every pod start milliseconds.
pub fn write_atomic_unsynced(path: &Path, contents: &[u8], mode: u32) -> Result<(), WriteError> {
    replace(path, contents, mode, Sync::No)
}

/// Whether a temporary file is synced before it takes its final name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sync {
    Yes,
    No,
}

fn replace(path: &Path, contents: &[u8], mode: u32, sync: Sync) -> Result<(), WriteError> {
    let tmp = write_temporary(path, contents, mode, sync)?;
    let result = std::fs::rename(&tmp, path).map_err(fail("rename into place", path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `path` with `contents` only if it does not exist yet, atomically: the name
/// appears with its whole contents or not at all (`link(2)` of a written temporary file),
/// so racing creators and crashes never leave a torn file. Returns false, writing
/// nothing, when `path` already exists.
pub fn create_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<bool, WriteError> {
    create(path, contents, mode, Sync::Yes)
}

/// [`create_atomic`] without the sync; see [`write_atomic_unsynced`] for when that is right.
pub fn create_atomic_unsynced(path: &Path, contents: &[u8], mode: u32) -> Result<bool, WriteError> {
    create(path, contents, mode, Sync::No)
}

fn create(path: &Path, contents: &[u8], mode: u32, sync: Sync) -> Result<bool, WriteError> {
    let tmp = write_temporary(path, contents, mode, sync)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(fail("create", path)(e)),
    }
}

/// Removes `path` if it exists: a directory with everything under it, anything else as a
/// file (a link itself, not its target). Returns whether there was something to remove.
pub fn remove_if_present(path: &Path) -> Result<bool, WriteError> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(fail("remove", path)(e)),
    }
}

/// Whether a directory entry named `name` is a temporary file of [`write_atomic`] or
/// [`create_atomic`] (in flight, or left by a crash): listings skip them, sweeps remove
/// them.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARK)
}

const TEMP_MARK: &str = ".tmp-";

fn fail(step: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> WriteError {
    let p = p.to_path_buf();
    move |source| WriteError {
        step,
        path: p,
        source,
    }
}

/// A temporary file with `contents` and `mode` next to `path`, synced when `sync` says so;
/// removed on error.
fn write_temporary(
    path: &Path,
    contents: &[u8],
    mode: u32,
    sync: Sync,
) -> Result<PathBuf, WriteError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(fail("create directory", dir))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("unicni");
    let tmp = dir.join(format!(
        ".{name}{TEMP_MARK}{}-{}",
        std::process::id(),
        unique()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(fail("create", &tmp))?;
        f.write_all(contents).map_err(fail("write", &tmp))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(fail("set the mode of", &tmp))?;
        if sync == Sync::Yes {
            f.sync_all().map_err(fail("sync", &tmp))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Distinguishes concurrent writers within one process (threads of an agent).
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The manifest files of `dir` in the order they are read: `*.yaml`, `*.yml` and `*.json`
/// directly in it, sorted by name; hidden ones (a ConfigMap mount's `..data`) skipped.
/// Shared by every watched manifests directory (policies, Services).
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let visible = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.'));
        let manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if visible && manifest && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
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

    #[test]
    fn create_writes_once_and_never_replaces() {
        let dir = std::env::temp_dir().join(format!("unicni-fsutil-new-{}", std::process::id()));
        let path = dir.join("lock");
        assert!(create_atomic(&path, b"first", 0o600).unwrap());
        assert!(!create_atomic(&path, b"second", 0o600).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["lock"], "no temporary left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unsynced_writes_replace_and_create_once_like_the_synced_ones() {
        let dir = std::env::temp_dir().join(format!("unicni-fsutil-ns-{}", std::process::id()));
        let path = dir.join("f");
        write_atomic_unsynced(&path, b"old", 0o600).unwrap();
        write_atomic_unsynced(&path, b"new", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert!(create_atomic_unsynced(&dir.join("g"), b"first", 0o600).unwrap());
        assert!(!create_atomic_unsynced(&dir.join("g"), b"second", 0o600).unwrap());
        assert_eq!(std::fs::read(dir.join("g")).unwrap(), b"first");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            2,
            "no temporary left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn remove_if_present_removes_files_and_trees_once() {
        let dir = std::env::temp_dir().join(format!("unicni-fsutil-rm-{}", std::process::id()));
        let file = dir.join("sock");
        write_atomic(&dir.join("tree/a/b"), b"x", 0o600).unwrap();
        write_atomic(&file, b"x", 0o600).unwrap();
        assert!(remove_if_present(&file).unwrap());
        assert!(!file.exists());
        assert!(!remove_if_present(&file).unwrap(), "already gone");
        assert!(remove_if_present(&dir.join("tree")).unwrap());
        assert!(!dir.join("tree").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporaries_are_recognised_and_plain_names_are_not() {
        let tmp =
            write_temporary(Path::new("/tmp/unicni-fsutil-probe"), b"", 0o600, Sync::Yes).unwrap();
        let name = tmp.file_name().unwrap().to_str().unwrap().to_owned();
        std::fs::remove_file(&tmp).unwrap();
        assert!(is_temporary(&name), "{name}");
        for plain in ["lock", "10.0.0.5", "c1:eth0", ".last", "x.tmp-1"] {
            assert!(!is_temporary(plain), "{plain}");
        }
    }
}

//! The local file store: one file per key under a directory.
//!
//! Create-only is `link(2)` of a fully written temporary file onto the key's path: the
//! kernel either makes the name appear with its whole content or fails with EEXIST, so
//! two installers racing for the lock, or a crash half-way, never leave a torn record.

use async_trait::async_trait;
use std::path::{Path, PathBuf};
use unicni_core::{CreateOutcome, Error, Result, Store};

/// Records are readable by other local tools (`unicni lock show` as any user).
const MODE: u32 = 0o644;

#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore { dir: dir.into() }
    }

    /// Keys are `/`-separated; each segment must be a plain name (not hidden: dot names
    /// are the atomic writes' temporaries).
    fn path(&self, key: &str) -> Result<PathBuf> {
        let ok = !key.is_empty() && key.split('/').all(|s| !s.is_empty() && !s.starts_with('.'));
        if !ok {
            return Err(Error::Store(format!("invalid key {key:?}")));
        }
        Ok(self.dir.join(key))
    }
}

#[async_trait]
impl Store for FileStore {
    fn describe(&self) -> String {
        format!("file store {}", self.dir.display())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let p = self.path(key)?;
        match std::fs::read(&p) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", p.display()), e)),
        }
    }

    async fn create(&self, key: &str, value: &[u8]) -> Result<CreateOutcome> {
        let p = self.path(key)?;
        if unicni_fsutil::create_atomic(&p, value, MODE)? {
            return Ok(CreateOutcome::Created);
        }
        let existing =
            std::fs::read(&p).map_err(|e| Error::io(format!("read {}", p.display()), e))?;
        Ok(CreateOutcome::Exists(existing))
    }

    async fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        let p = self.path(key)?;
        Ok(unicni_fsutil::write_atomic(&p, value, MODE)?)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let p = self.path(key)?;
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("delete {}", p.display()), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        walk(&self.dir, &self.dir, &mut out)?;
        out.retain(|(k, _)| k.starts_with(prefix));
        out.sort();
        Ok(out)
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if unicni_fsutil::is_temporary(&name.to_string_lossy()) {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if let Ok(v) = std::fs::read(&path) {
            let key = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            out.push((key, v));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_is_exclusive() {
        let d = tempfile::tempdir().unwrap();
        let s = FileStore::new(d.path());
        assert_eq!(
            s.create("lock", b"a").await.unwrap(),
            CreateOutcome::Created
        );
        assert_eq!(
            s.create("lock", b"b").await.unwrap(),
            CreateOutcome::Exists(b"a".to_vec())
        );
        assert_eq!(s.get("lock").await.unwrap().unwrap(), b"a");
    }

    #[tokio::test]
    async fn list_by_prefix_and_delete() {
        let d = tempfile::tempdir().unwrap();
        let s = FileStore::new(d.path());
        s.put("subnets/a", b"1").await.unwrap();
        s.put("subnets/b", b"2").await.unwrap();
        s.put("lock", b"x").await.unwrap();
        let l = s.list("subnets/").await.unwrap();
        assert_eq!(l.len(), 2);
        s.delete("subnets/a").await.unwrap();
        s.delete("subnets/a").await.unwrap();
        assert_eq!(s.list("subnets/").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn bad_keys_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let s = FileStore::new(d.path());
        assert!(s.get("../etc/passwd").await.is_err());
        assert!(s.get("").await.is_err());
    }
}

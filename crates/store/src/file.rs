//! The local file store: one file per key under a directory.
//!
//! Create-only is `link(2)` of a fully written temporary file onto the key's path: the
//! kernel either makes the name appear with its whole content or fails with EEXIST, so
//! two installers racing for the lock, or a crash half-way, never leave a torn record.

use async_trait::async_trait;
use std::io::Write;
use std::path::{Path, PathBuf};
use unicni_core::{CreateOutcome, Error, Result, Store};

#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore { dir: dir.into() }
    }

    /// Keys are `/`-separated; each segment must be a plain name.
    fn path(&self, key: &str) -> Result<PathBuf> {
        let ok = !key.is_empty()
            && key
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".." && !s.starts_with(".tmp"));
        if !ok {
            return Err(Error::Store(format!("invalid key {key:?}")));
        }
        Ok(self.dir.join(key))
    }

    fn write_temp(&self, target: &Path, value: &[u8]) -> Result<PathBuf> {
        let parent = target.parent().expect("key paths have a parent");
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("create store directory {}", parent.display()), e))?;
        let tmp = parent.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let mut f = std::fs::File::create(&tmp)
            .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        f.write_all(value)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        Ok(tmp)
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
        let tmp = self.write_temp(&p, value)?;
        let linked = std::fs::hard_link(&tmp, &p);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(CreateOutcome::Created),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let existing =
                    std::fs::read(&p).map_err(|e| Error::io(format!("read {}", p.display()), e))?;
                Ok(CreateOutcome::Exists(existing))
            }
            Err(e) => Err(Error::io(format!("create {}", p.display()), e)),
        }
    }

    async fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        let p = self.path(key)?;
        let tmp = self.write_temp(&p, value)?;
        std::fs::rename(&tmp, &p).map_err(|e| Error::io(format!("replace {}", p.display()), e))
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
        if name.to_string_lossy().starts_with(".tmp") {
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

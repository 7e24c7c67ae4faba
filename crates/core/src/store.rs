//! Where cluster-wide state lives: the lock, subnet leases, reservations.
//!
//! The store is a key-value space with one primitive stronger than put: create-only.
//! The lock and leases rely on it so that two nodes can never both win.

use crate::Result;
use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The key already existed; its current value is returned and nothing was written.
    Exists(Vec<u8>),
}

#[async_trait]
pub trait Store: Send + Sync {
    /// A short description for messages ("file store /var/lib/unicni/store").
    fn describe(&self) -> String;
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Writes `value` only if `key` does not exist, atomically.
    async fn create(&self, key: &str, value: &[u8]) -> Result<CreateOutcome>;
    async fn put(&self, key: &str, value: &[u8]) -> Result<()>;
    async fn delete(&self, key: &str) -> Result<()>;
    /// Every (key, value) whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>>;
}

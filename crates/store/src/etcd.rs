//! The etcd store (etcd v3 API): the classic flannel store, and what multi-node labs
//! and tests run on.
//!
//! Create-only is a transaction `create_revision(key) == 0 → put, else get`, so exactly
//! one of several racing writers wins and the losers see the winner's value. Keys can be
//! bound to an etcd lease: the server deletes them when the holder stops renewing, which
//! is how a node that died gives its subnet back.

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions, WatchStream,
};
use std::time::Duration;
use unicni_core::{CreateOutcome, Error, Result, Store};

#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    endpoints: Vec<String>,
    prefix: String,
}

/// Result of a create-only write bound to a TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeasedCreate {
    /// The key was created, bound to this etcd lease.
    Created(i64),
    /// The key existed: its value and the etcd lease it is bound to (0 = none).
    Exists(Vec<u8>, i64),
}

impl EtcdStore {
    /// Connects to `endpoints`; every key is stored under `prefix` (e.g. `/unicni`).
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10));
        let client = Client::connect(endpoints, Some(opts)).await.map_err(|e| {
            Error::Store(format!(
                "cannot connect to etcd at {}: {e}; check store.endpoints and that etcd is running",
                endpoints.join(",")
            ))
        })?;
        let store = EtcdStore {
            client,
            endpoints: endpoints.to_vec(),
            prefix: prefix.trim_end_matches('/').to_string(),
        };
        // Connecting is lazy: make one request so a wrong endpoint fails here, clearly.
        store.get("__ping").await?;
        Ok(store)
    }

    fn full(&self, key: &str) -> String {
        format!("{}/{key}", self.prefix)
    }

    fn short<'a>(&self, key: &'a str) -> &'a str {
        key.strip_prefix(&self.prefix)
            .map(|k| k.trim_start_matches('/'))
            .unwrap_or(key)
    }

    fn err(&self, op: &str, key: &str, e: etcd_client::Error) -> Error {
        Error::Store(format!(
            "etcd {} {op} {}: {e}",
            self.endpoints.join(","),
            self.full(key)
        ))
    }

    /// Creates `key` only if absent, bound to a new etcd lease of `ttl`.
    pub async fn create_with_ttl(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<LeasedCreate> {
        let mut c = self.client.clone();
        let lease = c
            .lease_grant(ttl.as_secs().max(1) as i64, None)
            .await
            .map_err(|e| self.err("grant lease for", key, e))?
            .id();
        let full = self.full(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                full.clone(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(full.clone(), None)]);
        let resp = c.txn(txn).await.map_err(|e| self.err("create", key, e))?;
        if resp.succeeded() {
            return Ok(LeasedCreate::Created(lease));
        }
        let _ = c.lease_revoke(lease).await;
        for r in resp.op_responses() {
            if let TxnOpResponse::Get(g) = r {
                if let Some(kv) = g.kvs().first() {
                    return Ok(LeasedCreate::Exists(kv.value().to_vec(), kv.lease()));
                }
            }
        }
        // Deleted between the compare and the get (its lease just expired): report empty.
        Ok(LeasedCreate::Exists(Vec::new(), 0))
    }

    /// Rewrites `key` keeping it bound to `lease`, only if it is still bound to it.
    /// Returns false when the key is gone or bound to another lease (the lease was lost).
    pub async fn put_with_lease(&self, key: &str, value: &[u8], lease: i64) -> Result<bool> {
        let full = self.full(key);
        let txn = Txn::new()
            .when([Compare::lease(full.clone(), CompareOp::Equal, lease)])
            .and_then([TxnOp::put(
                full,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let mut c = self.client.clone();
        let resp = c.txn(txn).await.map_err(|e| self.err("update", key, e))?;
        Ok(resp.succeeded())
    }

    /// One keep-alive round trip. Returns the remaining TTL; 0 means the lease expired.
    pub async fn keep_alive(&self, lease: i64) -> Result<i64> {
        let what = format!("lease {lease:x}");
        // An expired lease is an answer (TTL 0), not a failure: the caller re-acquires.
        let gone = |e: &etcd_client::Error| e.to_string().contains("lease not found");
        let mut c = self.client.clone();
        let (mut keeper, mut stream) = match c.lease_keep_alive(lease).await {
            Ok(p) => p,
            Err(e) if gone(&e) => return Ok(0),
            Err(e) => return Err(self.err("keep alive", &what, e)),
        };
        match keeper.keep_alive().await {
            Ok(()) => {}
            Err(e) if gone(&e) => return Ok(0),
            Err(e) => return Err(self.err("keep alive", &what, e)),
        }
        match stream.message().await {
            Ok(Some(r)) => Ok(r.ttl().max(0)),
            Ok(None) => Ok(0),
            Err(e) if gone(&e) => Ok(0),
            Err(e) => Err(self.err("keep alive", &what, e)),
        }
    }

    /// Ends `lease` now: every key bound to it is deleted.
    pub async fn revoke(&self, lease: i64) -> Result<()> {
        let mut c = self.client.clone();
        match c.lease_revoke(lease).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(self.err("revoke", &format!("lease {lease:x}"), e)),
        }
    }

    /// A stream of changes under `prefix` (used to wake a reconcile early).
    pub async fn watch_prefix(&self, prefix: &str) -> Result<WatchStream> {
        let mut c = self.client.clone();
        let (_watcher, stream) = c
            .watch(self.full(prefix), Some(WatchOptions::new().with_prefix()))
            .await
            .map_err(|e| self.err("watch", prefix, e))?;
        Ok(stream)
    }
}

#[async_trait]
impl Store for EtcdStore {
    fn describe(&self) -> String {
        format!("etcd {} (prefix {})", self.endpoints.join(","), self.prefix)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut c = self.client.clone();
        let r = c
            .get(self.full(key), None)
            .await
            .map_err(|e| self.err("get", key, e))?;
        Ok(r.kvs().first().map(|kv| kv.value().to_vec()))
    }

    async fn create(&self, key: &str, value: &[u8]) -> Result<CreateOutcome> {
        let full = self.full(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full.clone(), value, None)])
            .or_else([TxnOp::get(full, None)]);
        let mut c = self.client.clone();
        let resp = c.txn(txn).await.map_err(|e| self.err("create", key, e))?;
        if resp.succeeded() {
            return Ok(CreateOutcome::Created);
        }
        for r in resp.op_responses() {
            if let TxnOpResponse::Get(g) = r {
                if let Some(kv) = g.kvs().first() {
                    return Ok(CreateOutcome::Exists(kv.value().to_vec()));
                }
            }
        }
        Ok(CreateOutcome::Exists(Vec::new()))
    }

    async fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        let mut c = self.client.clone();
        c.put(self.full(key), value, None)
            .await
            .map(|_| ())
            .map_err(|e| self.err("put", key, e))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let mut c = self.client.clone();
        c.delete(self.full(key), None)
            .await
            .map(|_| ())
            .map_err(|e| self.err("delete", key, e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut c = self.client.clone();
        let r = c
            .get(self.full(prefix), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.err("list", prefix, e))?;
        let mut out: Vec<(String, Vec<u8>)> = r
            .kvs()
            .iter()
            .filter_map(|kv| {
                let k = kv.key_str().ok()?;
                Some((self.short(k).to_string(), kv.value().to_vec()))
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

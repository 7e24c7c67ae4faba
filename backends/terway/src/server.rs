//! The agent's side of the socket: one task per connection, one request per connection.
//! The socket file is mode 0600 and lives in a root-only directory: only root may ask
//! for addresses.

use crate::podinfo::{ManifestDir, PodInfo};
use crate::pool::{Pool, PoolError};
use crate::proto::{ErrorKind, Op, Reply, Request, VERSION};
use async_trait::async_trait;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use unicni_core::{Error, PodRef, Result};

/// Where pod annotations come from.
#[async_trait]
pub trait PodLookup: Send + Sync {
    async fn lookup(&self, pod: &PodRef) -> std::result::Result<PodInfo, String>;
    /// Err(why) while the source is not ready to answer from what it holds (a watch
    /// that has not listed yet): the agent reports not-ready meanwhile.
    fn synced(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

#[async_trait]
impl PodLookup for ManifestDir {
    async fn lookup(&self, pod: &PodRef) -> std::result::Result<PodInfo, String> {
        match (pod.namespace.as_deref(), pod.name.as_deref()) {
            (Some(ns), Some(name)) => {
                ManifestDir::lookup(self, ns, name).map_err(|e| e.to_string())
            }
            _ => Ok(PodInfo::default()),
        }
    }
}

/// No source of annotations: every pod gets the node's defaults.
pub struct NoPodInfo;

#[async_trait]
impl PodLookup for NoPodInfo {
    async fn lookup(&self, _pod: &PodRef) -> std::result::Result<PodInfo, String> {
        Ok(PodInfo::default())
    }
}

/// The pool once the agent has one, or why it has none yet.
#[derive(Clone)]
pub struct Readiness(Arc<RwLock<std::result::Result<Arc<Pool>, String>>>);

impl Readiness {
    pub fn new(why: impl Into<String>) -> Self {
        Self(Arc::new(RwLock::new(Err(why.into()))))
    }
    pub fn set_ready(&self, pool: Arc<Pool>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Ok(pool);
    }
    pub fn set_not_ready(&self, why: impl Into<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Err(why.into());
    }
    pub fn get(&self) -> std::result::Result<Arc<Pool>, String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub struct Server {
    pub ready: Readiness,
    pub pods: Arc<dyn PodLookup>,
}

/// Binds the socket at `path` (replacing a stale one), root-only.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("remove stale {}", path.display()), e)),
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| Error::io(format!("listen on {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("chmod 0600 {}", path.display()), e))?;
    Ok(listener)
}

impl Server {
    pub async fn serve(self: Arc<Self>, listener: UnixListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.connection(stream).await {
                            tracing::debug!("plugin connection: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept on the plugin socket: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn connection(&self, stream: UnixStream) -> std::io::Result<()> {
        let (r, mut w) = stream.into_split();
        let mut line = String::new();
        let mut reader = BufReader::new(r);
        let read = reader.read_line(&mut line);
        match tokio::time::timeout(Duration::from_secs(10), read).await {
            Ok(res) => {
                res?;
            }
            Err(_) => return Ok(()),
        }
        let reply =
            match serde_json::from_str::<serde_json::Value>(&line) {
                Err(e) => Reply::error(ErrorKind::InvalidRequest, format!("not JSON: {e}")),
                Ok(v) if v.get("version").and_then(|x| x.as_u64()) != Some(VERSION as u64) => {
                    Reply::error(
                        ErrorKind::Version,
                        format!(
                        "request version {} is not spoken by this agent (it speaks {VERSION}); \
                         install the plugin and the agent from the same release",
                        v.get("version").map(|x| x.to_string()).unwrap_or("(none)".into())
                    ),
                    )
                }
                Ok(v) => match serde_json::from_value::<Request>(v) {
                    Ok(req) => self.handle(req.op).await,
                    Err(e) => Reply::error(ErrorKind::InvalidRequest, format!("bad request: {e}")),
                },
            };
        let mut out = serde_json::to_vec(&reply).unwrap_or_default();
        out.push(b'\n');
        w.write_all(&out).await?;
        w.shutdown().await
    }

    async fn handle(&self, op: Op) -> Reply {
        let pool = match self.ready.get() {
            Ok(p) => p,
            Err(why) => return Reply::error(ErrorKind::NotReady, why),
        };
        match op {
            Op::Status => Reply::Ready,
            Op::Lookup { id } => match pool.lookup(&id).await {
                Some(net) => Reply::Allocated(Box::new(net)),
                None => Reply::NotFound,
            },
            Op::Allocate { id, pod, netns } => {
                let info = match self.pods.lookup(&pod).await {
                    Ok(i) => i,
                    Err(e) => {
                        return Reply::error(
                            ErrorKind::NotReady,
                            format!("cannot read the pod's annotations: {e}"),
                        )
                    }
                };
                match pool.allocate(&id, &pod, netns, &info).await {
                    Ok(net) => {
                        tracing::info!(attachment = %id, ip = ?net.ipv4, ipv6 = ?net.ipv6, eni = %net.eni.id, "allocated");
                        Reply::Allocated(Box::new(net))
                    }
                    Err(e) => {
                        tracing::warn!(attachment = %id, "allocation failed: {e}");
                        Reply::error(kind_of(&e), e.to_string())
                    }
                }
            }
            Op::Release { id } => match pool.release(&id).await {
                Ok(_) => Reply::Released,
                Err(e) => Reply::error(kind_of(&e), e.to_string()),
            },
            Op::List => Reply::Listed {
                allocations: pool.allocations().await,
            },
        }
    }
}

fn kind_of(e: &PoolError) -> ErrorKind {
    match e {
        PoolError::Exhausted(_) => ErrorKind::Exhausted,
        PoolError::Invalid(_) => ErrorKind::InvalidRequest,
        PoolError::Cloud(_) | PoolError::Node(_) => ErrorKind::Internal,
    }
}

/// The socket path under `run_dir`.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join(crate::proto::SOCKET_NAME)
}

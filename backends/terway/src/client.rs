//! The plugin's side of the socket: connect, send one request, read one reply, all
//! under a deadline. An agent that is absent or not ready becomes "try again later".

use crate::proto::{ErrorKind, Op, Reply, Request};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use unicni_core::{Error, Result};

#[derive(Debug, Clone)]
pub struct Client {
    pub socket: PathBuf,
    pub timeout: Duration,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            socket: socket.into(),
            timeout,
        }
    }

    /// Sends `op` and returns the agent's reply; protocol errors become `Error`s.
    pub async fn call(&self, op: Op) -> Result<Reply> {
        let what = op_name(&op);
        let fut = self.exchange(op);
        let reply = match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Error::TryAgain(format!(
                    "the unicni agent did not answer {what} within {:?} (socket {}); \
                     it may be creating an ENI: retry, or raise terway.agent_timeout_seconds",
                    self.timeout,
                    self.socket.display()
                )))
            }
        };
        match reply {
            Reply::Error { kind, message } => Err(match kind {
                ErrorKind::NotReady => {
                    Error::TryAgain(format!("the unicni agent is not ready: {message}"))
                }
                ErrorKind::Exhausted => Error::Exhausted(message),
                ErrorKind::InvalidRequest => Error::InvalidConfig(message),
                ErrorKind::Version => Error::Unavailable(message),
                ErrorKind::Internal => {
                    Error::TryAgain(format!("the unicni agent failed to {what}: {message}"))
                }
            }),
            other => Ok(other),
        }
    }

    async fn exchange(&self, op: Op) -> Result<Reply> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| {
            Error::TryAgain(format!(
                "the unicni agent is not running: cannot connect to {} ({e}); start `unicni agent` on this node",
                self.socket.display()
            ))
        })?;
        let (r, mut w) = stream.into_split();
        let mut line = serde_json::to_vec(&Request::new(op))
            .map_err(|e| Error::kernel_in("encode request", e))?;
        line.push(b'\n');
        let io = |e: std::io::Error| {
            Error::TryAgain(format!(
                "talking to the unicni agent on {}: {e}",
                self.socket.display()
            ))
        };
        w.write_all(&line).await.map_err(io)?;
        let mut answer = String::new();
        BufReader::new(r).read_line(&mut answer).await.map_err(io)?;
        serde_json::from_str(&answer).map_err(|e| {
            Error::TryAgain(format!(
                "the unicni agent on {} answered {answer:?}, which is not a reply ({e})",
                self.socket.display()
            ))
        })
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Allocate { .. } => "allocate",
        Op::Lookup { .. } => "look up",
        Op::Release { .. } => "release",
        Op::List => "list its allocations",
        Op::Status => "report status",
    }
}

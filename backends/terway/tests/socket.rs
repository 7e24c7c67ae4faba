//! The plugin ↔ agent socket: root-only, versioned, and every failure a clear "try again".

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use unicni_core::Error;
use unicni_terway::client::Client;
use unicni_terway::proto::Op;
use unicni_terway::server::{self, NoPodInfo, Readiness, Server};

#[tokio::test]
async fn socket_is_root_only_and_not_ready_means_try_again_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = server::socket_path(dir.path());
    let listener = server::bind(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let srv = Arc::new(Server {
        ready: Readiness::new("the ENI pool is starting"),
        pods: Arc::new(NoPodInfo),
    });
    tokio::spawn(srv.serve(listener));
    let c = Client::new(&path, Duration::from_secs(2));
    match c.call(Op::Status).await {
        Err(Error::TryAgain(m)) => assert!(m.contains("the ENI pool is starting"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A request in a version the agent does not speak is refused, not guessed at.
    let p = path.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::os::unix::net::UnixStream::connect(p).unwrap();
        s.write_all(b"{\"version\":99,\"op\":\"status\"}\n")
            .unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    assert!(
        answer.contains("\"kind\":\"version\"") && answer.contains("99"),
        "{answer}"
    );
}

#[tokio::test]
async fn no_agent_and_a_silent_agent_are_try_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sock");
    let c = Client::new(&path, Duration::from_secs(1));
    match c.call(Op::Status).await {
        Err(Error::TryAgain(m)) => assert!(
            m.contains("not running") && m.contains("absent.sock"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    // An agent that accepts but never answers: the deadline holds.
    let silent = dir.path().join("silent.sock");
    let _l = tokio::net::UnixListener::bind(&silent).unwrap();
    let c = Client::new(&silent, Duration::from_millis(300));
    let started = std::time::Instant::now();
    match c.call(Op::Status).await {
        Err(Error::TryAgain(m)) => assert!(m.contains("did not answer"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

//! The etcd store against a real etcd server (Debian's etcd-server), started on a free
//! loopback port with its own data directory and stopped by PID.

use std::time::Duration;
use unicni_core::{CreateOutcome, Store};
use unicni_store::{EtcdStore, LeasedCreate};
use unicni_testkit::Etcd;

#[tokio::test]
async fn create_only_ttl_keepalive_and_expiry_on_a_real_etcd() {
    let Some(e) = Etcd::start() else { return };
    let s = EtcdStore::connect(std::slice::from_ref(&e.url), "/t")
        .await
        .unwrap();
    // The first create wins; the second is told what the winner wrote.
    let outcomes = [
        s.create("lock", b"a").await.unwrap(),
        s.create("lock", b"b").await.unwrap(),
    ];
    assert_eq!(
        outcomes,
        [CreateOutcome::Created, CreateOutcome::Exists(b"a".to_vec())]
    );
    s.put("x/1", b"1").await.unwrap();
    s.put("x/2", b"2").await.unwrap();
    let l = s.list("x/").await.unwrap();
    assert_eq!(
        l,
        vec![("x/1".into(), b"1".to_vec()), ("x/2".into(), b"2".to_vec())]
    );

    let LeasedCreate::Created(id) = s
        .create_with_ttl("sub/a", b"me", Duration::from_secs(2))
        .await
        .unwrap()
    else {
        panic!("first create must win")
    };
    match s
        .create_with_ttl("sub/a", b"other", Duration::from_secs(2))
        .await
        .unwrap()
    {
        LeasedCreate::Exists(v, holder) => {
            assert_eq!(v, b"me");
            assert_eq!(holder, id);
        }
        other => panic!("{other:?}"),
    }
    // Kept alive past its TTL, then let go: the server deletes it.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(s.keep_alive(id).await.unwrap() > 0);
    }
    assert!(s.get("sub/a").await.unwrap().is_some());
    assert!(s.put_with_lease("sub/a", b"me2", id).await.unwrap());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        s.get("sub/a").await.unwrap().is_none(),
        "expired key must be gone"
    );
    assert_eq!(s.keep_alive(id).await.unwrap(), 0);
    assert!(!s.put_with_lease("sub/a", b"me3", id).await.unwrap());
}

#[tokio::test]
async fn unreachable_etcd_is_a_clear_error() {
    let port = unicni_testkit::free_port();
    let err = EtcdStore::connect(&[format!("http://127.0.0.1:{port}")], "/t")
        .await
        .err()
        .expect("nothing listens there");
    let msg = err.to_string();
    assert!(
        msg.contains(&port.to_string()) && msg.contains("etcd"),
        "{msg}"
    );
}

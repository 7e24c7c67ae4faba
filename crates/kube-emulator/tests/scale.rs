//! Many watchers at once: 1,000 open watches of Nodes (what 1,000 agents hold), each of
//! which must see a new Node, and keep-alive connections that carry many requests.

use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use unicni_kube_emulator::Emulator;

const NODES: &str = "/api/v1/nodes";

/// Reads a response head; returns the status code and Content-Length (if any).
fn head(r: &mut impl BufRead) -> (u16, Option<usize>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let code = line[9..12].parse().unwrap();
    let mut len = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h == "\r\n" {
            return (code, len);
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok();
        }
    }
}

#[test]
fn a_thousand_watches_all_see_a_new_node() {
    let api = Emulator::new();
    // No bookmarks: nothing is written to an idle watch, so a gone client is noticed by
    // looking, not by a failed write.
    api.bookmark_every(None);
    for i in 0..50 {
        api.put(
            NODES,
            json!({"kind": "Node", "metadata": {"name": format!("n{i}")}}),
        );
    }
    let url = api.start();
    let addr = url.trim_start_matches("http://").to_string();
    let rv = api.get(NODES, "", "n49").unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    let mut watchers: Vec<BufReader<TcpStream>> = (0..1000)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            write!(
                s,
                "GET {NODES}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            .unwrap();
            BufReader::new(s)
        })
        .collect();
    for w in &mut watchers {
        assert_eq!(head(w).0, 200);
    }
    let open = api.metrics_text();
    assert!(open.contains("kube_sim_watches 1000"), "{open}");

    let added = Instant::now();
    api.put(NODES, json!({"kind": "Node", "metadata": {"name": "new"}}));
    for w in &mut watchers {
        let mut size = String::new();
        w.read_line(&mut size).unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        let mut buf = vec![0; n + 2];
        w.read_exact(&mut buf).unwrap();
        let e: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
        assert_eq!(
            (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
            (Some("ADDED"), Some("new"))
        );
    }
    let seen = added.elapsed();
    eprintln!("1,000 watchers saw the new Node within {seen:?}");
    assert!(seen < Duration::from_secs(5), "{seen:?}");
    assert_eq!(api.counts()[&("watch".into(), "nodes".into())], 1000);

    // Clients that go away release their watches (and threads), idle as they are.
    drop(watchers);
    let until = Instant::now() + Duration::from_secs(15);
    while !api.metrics_text().contains("kube_sim_watches 0\n") {
        assert!(Instant::now() < until, "{}", api.metrics_text());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn keep_alive_carries_many_requests_on_one_connection() {
    let api = Emulator::new();
    api.put(NODES, json!({"kind": "Node", "metadata": {"name": "a"}}));
    let url = api.start();
    let mut s = BufReader::new(TcpStream::connect(url.trim_start_matches("http://")).unwrap());
    for _ in 0..100 {
        write!(s.get_mut(), "GET {NODES}/a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (code, len) = head(&mut s);
        assert_eq!(code, 200);
        let mut body = vec![0; len.unwrap()];
        s.read_exact(&mut body).unwrap();
        let node: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(node["metadata"]["name"], "a");
    }
    assert_eq!(api.counts()[&("get".into(), "nodes".into())], 100);
}

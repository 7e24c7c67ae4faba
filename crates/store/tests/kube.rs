//! The Kubernetes store against an emulated API server: a small stateful HTTP server that
//! speaks enough of the wire protocol (Node list/get/merge-patch, ConfigMap create with
//! 409 on conflict, get, list) for the real kube client to run end to end.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use unicni_core::{CreateOutcome, Store};
use unicni_store::{KubeNodes, KubeStore};

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, Value>,
    configmaps: BTreeMap<String, Value>,
}

fn status(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
               "message": reason, "reason": reason, "code": code}),
    )
}

fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (slot, Value::Object(b)) if !slot.is_object() => {
            *slot = json!({});
            merge(slot, &Value::Object(b.clone()));
        }
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

fn handle(st: &Mutex<State>, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let mut st = st.lock().unwrap();
    let cms = "/api/v1/namespaces/kube-system/configmaps";
    match (method, path) {
        ("GET", "/api/v1/nodes") => (
            200,
            json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": st.nodes.values().collect::<Vec<_>>()}),
        ),
        ("GET", p) if p.starts_with("/api/v1/nodes/") => match st.nodes.get(&p[14..]) {
            Some(n) => (200, n.clone()),
            None => status(404, "NotFound"),
        },
        ("PATCH", p) if p.starts_with("/api/v1/nodes/") => match st.nodes.get_mut(&p[14..]) {
            Some(n) => {
                merge(n, &serde_json::from_slice(body).unwrap());
                (200, n.clone())
            }
            None => status(404, "NotFound"),
        },
        ("POST", p) if p == cms => {
            let mut cm: Value = serde_json::from_slice(body).unwrap();
            let name = cm["metadata"]["name"].as_str().unwrap().to_string();
            if st.configmaps.contains_key(&name) {
                return status(409, "AlreadyExists");
            }
            cm["apiVersion"] = "v1".into();
            cm["kind"] = "ConfigMap".into();
            st.configmaps.insert(name, cm.clone());
            (201, cm)
        }
        ("GET", p) if p == cms => (
            200,
            json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": st.configmaps.values().collect::<Vec<_>>()}),
        ),
        ("GET", p) if p.starts_with(cms) => match st.configmaps.get(&p[cms.len() + 1..]) {
            Some(c) => (200, c.clone()),
            None => status(404, "NotFound"),
        },
        _ => status(404, "NotFound"),
    }
}

fn serve(state: Arc<Mutex<State>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut len = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let target = parts.next().unwrap_or("/").to_string();
            let path = target.split('?').next().unwrap().to_string();
            let (code, v) = handle(&state, &method, &path, &body);
            let b = v.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                b.len()
            );
        }
    });
    url
}

fn kubeconfig(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let p = dir.join("kubeconfig");
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emu\n  cluster:\n    server: {url}\n\
             contexts:\n- name: emu\n  context:\n    cluster: emu\n    user: u\ncurrent-context: emu\n\
             users:\n- name: u\n  user:\n    token: t\n"
        ),
    )
    .unwrap();
    p
}

fn node(name: &str, cidr: Option<&str>, ip: &str) -> Value {
    let mut n = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]}});
    if let Some(c) = cidr {
        n["spec"] = json!({"podCIDR": c});
    }
    n
}

#[tokio::test]
async fn node_leases_and_configmap_records_through_the_kube_client() {
    let state = Arc::new(Mutex::new(State::default()));
    {
        let mut s = state.lock().unwrap();
        s.nodes
            .insert("a".into(), node("a", Some("10.244.1.0/24"), "192.168.0.1"));
        s.nodes.insert("b".into(), node("b", None, "192.168.0.2"));
    }
    let url = serve(state.clone());
    let dir = tempfile::tempdir().unwrap();
    let client = unicni_store::kube::client(Some(&kubeconfig(dir.path(), &url)))
        .await
        .unwrap();

    // The lock record: create-only, the loser sees the winner's value.
    let store = KubeStore::new(client.clone(), "kube-system");
    assert_eq!(
        store.create("lock", b"first").await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        store.create("lock", b"second").await.unwrap(),
        CreateOutcome::Exists(b"first".to_vec())
    );
    assert_eq!(store.get("lock").await.unwrap().unwrap(), b"first");
    assert_eq!(store.get("absent").await.unwrap(), None);
    assert_eq!(
        store.list("lo").await.unwrap(),
        vec![("lock".to_string(), b"first".to_vec())]
    );
    let cm = state.lock().unwrap().configmaps["unicni-lock"].clone();
    assert_eq!(cm["immutable"], true);

    // Nodes: podCIDR is the subnet; the underlay IP falls back to InternalIP until annotated.
    let nodes = KubeNodes::new(client);
    let a = nodes.get("a").await.unwrap();
    assert_eq!(a.pod_cidr.as_deref(), Some("10.244.1.0/24"));
    assert_eq!(a.public_ip.as_deref(), Some("192.168.0.1"));
    assert_eq!(a.vtep_mac, None);
    nodes
        .annotate("a", "192.168.9.1", Some("02:00:00:00:00:01"), "vxlan")
        .await
        .unwrap();
    let a = nodes.get("a").await.unwrap();
    assert_eq!(a.public_ip.as_deref(), Some("192.168.9.1"));
    assert_eq!(a.vtep_mac.as_deref(), Some("02:00:00:00:00:01"));
    assert_eq!(a.mode.as_deref(), Some("vxlan"));
    let all = nodes.list().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all.iter().find(|n| n.node == "b").unwrap().pod_cidr, None);
    let e = nodes.get("missing").await.unwrap_err().to_string();
    assert!(e.contains("\"missing\"") && e.contains("node.name"), "{e}");
}

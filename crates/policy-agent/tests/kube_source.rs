//! The Kubernetes source against an emulated API server that speaks enough of list and
//! watch for kube-rs watchers: the first snapshot comes from the lists, later ones follow
//! watch events (added, modified, deleted) within a fraction of a second. No root needed.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use unicni_policy_agent::{KubeSource, Source};

/// Objects by (collection path, namespace/name), and a log of watch events.
#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<(String, String), Value>,
    /// (resourceVersion, collection, event type, object)
    log: Vec<(u64, String, String, Value)>,
}

struct Api {
    state: Mutex<State>,
    changed: Condvar,
}

const PODS: &str = "/api/v1/pods";
const NAMESPACES: &str = "/api/v1/namespaces";
const POLICIES: &str = "/apis/networking.k8s.io/v1/networkpolicies";

impl Api {
    fn put(&self, collection: &str, mut obj: Value) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = rv.to_string().into();
        let key = key_of(&obj);
        let kind = if st
            .objects
            .insert((collection.to_string(), key), obj.clone())
            .is_some()
        {
            "MODIFIED"
        } else {
            "ADDED"
        };
        st.log.push((rv, collection.to_string(), kind.into(), obj));
        self.changed.notify_all();
    }

    fn delete(&self, collection: &str, key: &str) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        if let Some(mut obj) = st
            .objects
            .remove(&(collection.to_string(), key.to_string()))
        {
            obj["metadata"]["resourceVersion"] = rv.to_string().into();
            st.log
                .push((rv, collection.to_string(), "DELETED".into(), obj));
        }
        self.changed.notify_all();
    }
}

fn key_of(obj: &Value) -> String {
    format!(
        "{}/{}",
        obj["metadata"]["namespace"].as_str().unwrap_or(""),
        obj["metadata"]["name"].as_str().unwrap()
    )
}

fn serve(api: Arc<Api>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let api = api.clone();
            std::thread::spawn(move || handle(&api, stream));
        }
    });
    url
}

fn handle(api: &Api, mut stream: std::net::TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params: BTreeMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let (api_version, list_kind) = match path {
        PODS => ("v1", "PodList"),
        NAMESPACES => ("v1", "NamespaceList"),
        POLICIES => ("networking.k8s.io/v1", "NetworkPolicyList"),
        _ => {
            let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":404}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            return;
        }
    };
    if params.get("watch") == Some(&"true") {
        let mut since: u64 = params
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let until = Instant::now() + Duration::from_secs(60);
        let mut st = api.state.lock().unwrap();
        while Instant::now() < until {
            let events: Vec<_> = st
                .log
                .iter()
                .filter(|(rv, c, _, _)| *rv > since && c == path)
                .cloned()
                .collect();
            for (rv, _, kind, obj) in events {
                let line = format!("{}\n", json!({"type": kind, "object": obj}));
                if write!(stream, "{:x}\r\n{line}\r\n", line.len()).is_err() {
                    return;
                }
                since = rv;
            }
            let _ = stream.flush();
            st = api
                .changed
                .wait_timeout(st, Duration::from_millis(200))
                .unwrap()
                .0;
        }
        let _ = write!(stream, "0\r\n\r\n");
        return;
    }
    let st = api.state.lock().unwrap();
    let items: Vec<&Value> = st
        .objects
        .iter()
        .filter(|((c, _), _)| c == path)
        .map(|(_, v)| v)
        .collect();
    let body = json!({
        "apiVersion": api_version,
        "kind": list_kind,
        "metadata": {"resourceVersion": st.rv.to_string()},
        "items": items,
    })
    .to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn pod(ns: &str, name: &str, app: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
        "status": {"podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

fn namespace(name: &str, team: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"team": team}},
    })
}

fn deny_all(ns: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny", "namespace": ns},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    })
}

#[test]
fn kubernetes_source_follows_lists_and_watch_events() {
    let api = Arc::new(Api {
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
    });
    api.put(NAMESPACES, namespace("shop", "shop"));
    api.put(PODS, pod("shop", "web", "web", "10.0.0.2"));
    let url = serve(api.clone());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let config = kube::Config::new(url.parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let mut source = Source::Kubernetes(KubeSource::start(client, Duration::from_millis(20)));
        let snap = next(&mut source).await;
        assert_eq!(snap.pods.len(), 1);
        assert!(snap.policies.is_empty());
        assert_eq!(
            snap.namespace_labels("shop")
                .get("team")
                .map(String::as_str),
            Some("shop")
        );

        // A policy and a pod arrive through the watches.
        let t = Instant::now();
        api.put(POLICIES, deny_all("shop"));
        api.put(PODS, pod("shop", "db", "db", "10.0.0.3"));
        let mut snap = next(&mut source).await;
        while snap.policies.len() != 1 || snap.pods.len() != 2 {
            snap = next(&mut source).await;
        }
        let took = t.elapsed();
        assert!(took < Duration::from_secs(1), "watch events took {took:?}");
        assert_eq!(snap.policies[0].name, "deny");

        // Modified and deleted objects are followed too.
        api.put(PODS, pod("shop", "db", "db", "10.0.0.4"));
        api.delete(POLICIES, "shop/deny");
        let mut snap = next(&mut source).await;
        while !snap.policies.is_empty()
            || !snap
                .pods
                .iter()
                .any(|p| p.ips == vec!["10.0.0.4".parse::<std::net::IpAddr>().unwrap()])
        {
            snap = next(&mut source).await;
        }
    });
}

async fn next(s: &mut Source) -> unicni_policy::Snapshot {
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("a snapshot within 5 s")
        .expect("a snapshot")
}

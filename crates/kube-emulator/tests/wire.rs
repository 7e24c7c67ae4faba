//! The emulator's wire protocol seen from a plain HTTP client: list pages, watch from a
//! resource version, bookmarks, 410 after compaction, create/replace/patch/delete answers.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use unicni_kube_emulator::Emulator;

const PODS: &str = "/api/v1/pods";

fn pod(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": {"app": name}}})
}

/// One request; the status code and the JSON body (a whole response, not a watch).
fn call(url: &str, method: &str, path: &str, body: Option<(&str, Value)>) -> (u16, Value) {
    let mut s = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    let (ct, b) = body
        .map(|(ct, v)| (ct.to_string(), v.to_string()))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    (code, serde_json::from_str(body).unwrap())
}

/// POST a JSON object.
fn post(url: &str, path: &str, body: Value) -> (u16, Value) {
    call(url, "POST", path, Some(("application/json", body)))
}

/// PUT (replace) with a JSON object.
fn put(url: &str, path: &str, body: Value) -> (u16, Value) {
    call(url, "PUT", path, Some(("application/json", body)))
}

/// PATCH with a JSON merge patch.
fn patch(url: &str, path: &str, body: Value) -> (u16, Value) {
    call(
        url,
        "PATCH",
        path,
        Some(("application/merge-patch+json", body)),
    )
}

/// A watch: the events as they come (one JSON line per chunk).
fn watch(url: &str, path: &str) -> impl Iterator<Item = Value> {
    let mut s = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h == "\r\n" {
            break;
        }
    }
    std::iter::from_fn(move || {
        let mut size = String::new();
        r.read_line(&mut size).ok()?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return None;
        }
        let mut buf = vec![0; n + 2];
        r.read_exact(&mut buf).ok()?;
        serde_json::from_slice(&buf[..n]).ok()
    })
}

#[test]
fn lists_in_pages_and_watches_from_a_version() {
    let api = Emulator::new();
    api.page_size(2);
    for name in ["a", "b", "c"] {
        api.put(PODS, pod("shop", name));
    }
    api.put(PODS, pod("lab", "d"));
    let url = api.start();

    let (code, page) = call(&url, "GET", "/api/v1/namespaces/shop/pods?limit=500", None);
    assert_eq!(code, 200);
    assert_eq!(page["kind"], "PodList");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cont = page["metadata"]["continue"].as_str().unwrap().to_string();
    let (_, rest) = call(
        &url,
        "GET",
        &format!("/api/v1/namespaces/shop/pods?limit=500&continue={cont}"),
        None,
    );
    assert_eq!(rest["items"][0]["metadata"]["name"], "c");
    assert!(rest["metadata"]["continue"].is_null());
    let (_, sel) = call(&url, "GET", "/api/v1/pods?labelSelector=app%3Dd", None);
    assert_eq!(sel["items"].as_array().unwrap().len(), 1);
    let rv: u64 = page["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // A watch from that version sees later writes only, then bookmarks while idle.
    api.bookmark_every(Some(Duration::from_millis(200)));
    let mut events = watch(
        &url,
        &format!("/api/v1/pods?watch=true&resourceVersion={rv}&allowWatchBookmarks=true"),
    );
    api.put(PODS, pod("shop", "e"));
    api.delete(PODS, "shop", "a");
    let e = events.next().unwrap();
    assert_eq!(
        (e["type"].as_str(), &e["object"]["metadata"]["name"]),
        (Some("ADDED"), &json!("e"))
    );
    let e = events.next().unwrap();
    assert_eq!(e["type"], "DELETED");
    let e = events.next().unwrap();
    assert_eq!(e["type"], "BOOKMARK");
    assert_eq!(
        e["object"]["metadata"]["resourceVersion"],
        (rv + 2).to_string()
    );

    // After compaction an old version is 410 Expired.
    api.compact();
    let e = watch(
        &url,
        &format!("/api/v1/pods?watch=true&resourceVersion={rv}"),
    )
    .next()
    .unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["code"].as_u64()),
        (Some("ERROR"), Some(410))
    );
}

#[test]
fn create_replace_patch_delete() {
    let api = Emulator::new();
    let url = api.start();
    let cms = "/api/v1/namespaces/kube-system/configmaps";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "1"}});
    let (code, made) = post(&url, cms, cm.clone());
    assert_eq!(code, 201);
    assert_eq!(made["metadata"]["namespace"], "kube-system");
    let (code, again) = post(&url, cms, cm);
    assert_eq!(
        (code, again["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );

    // A replace from a stale version conflicts; from the current one it goes through.
    let mut stale = made.clone();
    stale["metadata"]["resourceVersion"] = "0".into();
    let (code, _) = put(&url, &format!("{cms}/x"), stale);
    assert_eq!(code, 409);
    let mut fresh = made.clone();
    fresh["data"]["k"] = "2".into();
    let (code, replaced) = put(&url, &format!("{cms}/x"), fresh);
    assert_eq!((code, replaced["data"]["k"].as_str()), (200, Some("2")));

    let merge = json!({"metadata": {"annotations": {"a": "b"}}, "data": {"k": null}});
    let (code, patched) = patch(&url, &format!("{cms}/x"), merge);
    assert_eq!(code, 200);
    assert_eq!(patched["metadata"]["annotations"]["a"], "b");
    assert!(patched["data"]["k"].is_null());
    assert_eq!(patched["metadata"]["uid"], made["metadata"]["uid"]);

    let (code, _) = call(&url, "DELETE", &format!("{cms}/x"), None);
    assert_eq!(code, 200);
    let (code, gone) = call(&url, "GET", &format!("{cms}/x"), None);
    assert_eq!((code, gone["kind"].as_str()), (404, Some("Status")));
    let (code, version) = call(&url, "GET", "/version", None);
    assert_eq!((code, version["minor"].as_str()), (200, Some("32")));
    api.set_raw("/version", json!({"major": "1", "minor": "30"}));
    let (_, version) = call(&url, "GET", "/version", None);
    assert_eq!(version["minor"], "30", "a raw answer takes precedence");
}

#[test]
fn immutable_config_maps_and_secrets_refuse_changes_to_their_data() {
    let api = Emulator::new();
    let url = api.start();
    for (coll, field) in [("configmaps", "data"), ("secrets", "binaryData")] {
        let path = format!("/api/v1/namespaces/kube-system/{coll}");
        let obj = json!({"apiVersion": "v1", "metadata": {"name": "frozen"},
                         "immutable": true, field: {"k": "MQ=="}});
        let (code, made) = post(&url, &path, obj);
        assert_eq!(code, 201);
        let one = format!("{path}/frozen");

        let mut edited = made.clone();
        edited[field]["k"] = "Mg==".into();
        let (code, refused) = put(&url, &one, edited);
        assert_eq!((code, refused["reason"].as_str()), (422, Some("Invalid")));
        let message = refused["message"].as_str().unwrap();
        assert!(
            message.ends_with(&format!(
                "\"frozen\" is invalid: {field}: Forbidden: field is immutable when `immutable` is set"
            )),
            "{message}"
        );
        let merge = json!({field: {"k": null}});
        let (code, _) = patch(&url, &one, merge);
        assert_eq!(code, 422, "{coll}: merge patch of the data");
        let thaw = json!({"immutable": false});
        let (code, refused) = patch(&url, &one, thaw);
        assert_eq!(code, 422, "{coll}: immutable back to false");
        assert!(refused["message"]
            .as_str()
            .unwrap()
            .contains("immutable: Forbidden"));
        let (_, now) = call(&url, "GET", &one, None);
        assert_eq!(now[field], made[field], "{coll}: unchanged");
        assert_eq!(now["immutable"], true);

        // Metadata can change; deleting and creating again is how the data is replaced.
        let labels = json!({"metadata": {"labels": {"a": "b"}}});
        let (code, _) = patch(&url, &one, labels);
        assert_eq!(code, 200, "{coll}: labels");
        assert_eq!(call(&url, "DELETE", &one, None).0, 200);
        let obj = json!({"apiVersion": "v1", "metadata": {"name": "frozen"},
                         "immutable": true, field: {"k": "Mg=="}});
        assert_eq!(post(&url, &path, obj).0, 201);
    }
    // A mutable one still takes edits.
    let path = "/api/v1/namespaces/kube-system/configmaps";
    let obj = json!({"apiVersion": "v1", "metadata": {"name": "thawed"}, "immutable": false,
                     "data": {"k": "1"}});
    assert_eq!(post(&url, path, obj).0, 201);
    let merge = json!({"data": {"k": "2"}, "immutable": true});
    let (code, _) = patch(&url, &format!("{path}/thawed"), merge);
    assert_eq!(code, 200);
}

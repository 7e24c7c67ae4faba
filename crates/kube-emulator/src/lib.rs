//! An emulated Kubernetes API server for tests: enough of the wire protocol for the real
//! kube client (kube-rs `Api`, watchers and reflectors) to run end to end against it, with
//! no cluster. Dev-only (`[dev-dependencies]`); not published.
//!
//! What it speaks (JSON only, HTTP/1.1, one connection per request):
//!
//! - resource paths of the core group (`/api/v1/...`) and of named groups
//!   (`/apis/<group>/<version>/...`), cluster-scoped (`/api/v1/nodes/<name>`) and namespaced
//!   (`/api/v1/namespaces/<ns>/pods/<name>`, and all namespaces at `/api/v1/pods`); a
//!   `/status` subresource is the object itself;
//! - list with `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`), `fieldSelector`
//!   (equality on a dotted path such as `metadata.name` or `spec.nodeName`), `limit` and
//!   `continue` (pages, optionally capped with [`Emulator::page_size`]), the collection's
//!   `resourceVersion` in `metadata`;
//! - watch (`watch=true`) from a `resourceVersion` (none or `0`: the current objects as
//!   `ADDED` first), `ADDED`/`MODIFIED`/`DELETED` events, `BOOKMARK`s when
//!   `allowWatchBookmarks=true`, `timeoutSeconds`, and `ERROR` 410 Expired for a version
//!   older than the last [`Emulator::compact`];
//! - get, create (`POST`, 409 AlreadyExists), replace (`PUT`, 409 Conflict on a stale
//!   `metadata.resourceVersion`), patch (merge, strategic merge and apply bodies all treated
//!   as a JSON merge patch) and delete, with `Status` objects for errors;
//! - fixed answers for other paths ([`Emulator::set_raw`], e.g. `/version`).
//!
//! Every write bumps one global resource version, stamped on the object.
//!
//! ```no_run
//! use serde_json::json;
//! let emu = unicni_kube_emulator::Emulator::new();
//! emu.put("/api/v1/namespaces", json!({"metadata": {"name": "shop"}}));
//! let url = emu.start();
//! let dir = std::env::temp_dir();
//! let kubeconfig = unicni_kube_emulator::kubeconfig(&dir, &url);
//! ```

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// (collection, namespace, name); the collection is the all-namespaces path, e.g.
/// `/api/v1/pods` or `/apis/networking.k8s.io/v1/networkpolicies`.
type Key = (String, String, String);

#[derive(Clone)]
struct Event {
    rv: u64,
    collection: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// Watches from a version at or below this one are answered 410 Expired.
    compacted: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<Event>,
    raw: BTreeMap<String, Value>,
    requests: Vec<String>,
    page_size: Option<usize>,
    bookmark_every: Option<Duration>,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

/// The emulated API server: a handle on its objects (cheap to clone, every clone is the
/// same server). Serve it with [`Emulator::start`] or [`Emulator::serve`].
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

impl Default for Emulator {
    fn default() -> Self {
        Self::new()
    }
}

impl Emulator {
    pub fn new() -> Emulator {
        let state = State {
            bookmark_every: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        Emulator {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                changed: Condvar::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Listens on 127.0.0.1 (a free port) in the calling thread's network namespace and
    /// serves there; returns the base URL.
    pub fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the emulated API server");
        self.serve(listener)
    }

    /// Serves on `listener` (bound wherever the test needs it, e.g. inside a network
    /// namespace) from a background thread; returns the base URL.
    pub fn serve(&self, listener: TcpListener) -> String {
        let url = format!(
            "http://{}",
            listener.local_addr().expect("listener address")
        );
        let emu = self.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let emu = emu.clone();
                std::thread::spawn(move || emu.handle(stream));
            }
        });
        url
    }

    /// Largest page a list returns, whatever `limit` the client asks for.
    pub fn page_size(&self, n: usize) {
        self.lock().page_size = Some(n.max(1));
    }

    /// How often an idle watch that asked for bookmarks gets one (`None`: never).
    pub fn bookmark_every(&self, every: Option<Duration>) {
        self.lock().bookmark_every = every;
    }

    /// A fixed JSON answer for `GET path` (a path with a query string matches exactly that
    /// request; otherwise the query is ignored).
    pub fn set_raw(&self, path: &str, body: Value) {
        self.lock().raw.insert(path.to_string(), body);
    }

    /// Creates or replaces an object of `collection` (its namespace and name from its
    /// `metadata`): an `ADDED` or `MODIFIED` event. Returns the object as stored.
    pub fn put(&self, collection: &str, object: Value) -> Value {
        let mut st = self.lock();
        let stored = st.write(collection, object);
        drop(st);
        self.inner.changed.notify_all();
        stored
    }

    /// Deletes an object (`namespace` empty for cluster-scoped ones): a `DELETED` event.
    /// Returns it, or `None` when there was none.
    pub fn delete(&self, collection: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut st = self.lock();
        let gone = st.remove(collection, namespace, name);
        drop(st);
        self.inner.changed.notify_all();
        gone
    }

    pub fn get(&self, collection: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&key(collection, namespace, name))
            .cloned()
    }

    /// Forgets the event history: a watch from an older version gets 410 Expired and the
    /// client has to list again.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.compacted = st.rv;
        st.log.clear();
    }

    /// The request lines served so far (`GET /api/v1/pods?limit=500 HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    fn handle(&self, mut stream: TcpStream) {
        let Ok(read) = stream.try_clone() else { return };
        let mut reader = BufReader::new(read);
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let (mut len, mut content_type) = (0usize, String::new());
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = lower.strip_prefix("content-type:") {
                content_type = v.trim().to_string();
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        self.lock().requests.push(line.trim().to_string());
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("/").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let params: BTreeMap<String, String> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), unescape(v)))
            .collect();
        let Some(r) = Route::parse(path) else {
            let raw = {
                let st = self.lock();
                st.raw
                    .get(target.as_str())
                    .or_else(|| st.raw.get(path))
                    .cloned()
            };
            let (code, v) = match (method.as_str(), raw) {
                ("GET", Some(v)) => (200, v),
                _ => not_found(path),
            };
            return respond(&mut stream, code, &v);
        };
        if method == "GET"
            && r.name.is_none()
            && params.get("watch").map(String::as_str) == Some("true")
        {
            return self.watch(stream, &r, &params);
        }
        let (code, v) = self.answer(&method, &r, &params, &content_type, &body);
        respond(&mut stream, code, &v);
    }

    fn answer(
        &self,
        method: &str,
        r: &Route,
        params: &BTreeMap<String, String>,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Value) {
        let parsed = || -> Result<Value, (u16, Value)> {
            serde_json::from_slice(body).map_err(|e| status(400, "BadRequest", &e.to_string()))
        };
        let ns = r.namespace.clone().unwrap_or_default();
        let mut st = self.lock();
        let out = match (method, &r.name) {
            ("GET", None) => Ok(st.list_page(r, params)),
            ("GET", Some(name)) => match st.objects.get(&key(&r.collection, &ns, name)) {
                Some(o) => Ok((200, o.clone())),
                None => Err(missing(r, name)),
            },
            ("POST", None) => parsed().and_then(|mut o| {
                if let Some(n) = &r.namespace {
                    o["metadata"]["namespace"] = n.clone().into();
                }
                let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
                if name.is_empty() {
                    return Err(status(422, "Invalid", "metadata.name: Required value"));
                }
                let o_ns = o["metadata"]["namespace"].as_str().unwrap_or("").to_string();
                if st.objects.contains_key(&key(&r.collection, &o_ns, &name)) {
                    return Err(status(
                        409,
                        "AlreadyExists",
                        &format!("{} \"{name}\" already exists", r.resource),
                    ));
                }
                Ok((201, st.write(&r.collection, o)))
            }),
            ("PUT", Some(name)) => parsed().and_then(|mut o| {
                let Some(have) = st.objects.get(&key(&r.collection, &ns, name)) else {
                    return Err(missing(r, name));
                };
                let wanted = o["metadata"]["resourceVersion"].as_str().unwrap_or("");
                if !wanted.is_empty() && Some(wanted) != have["metadata"]["resourceVersion"].as_str()
                {
                    return Err(status(
                        409,
                        "Conflict",
                        &format!(
                            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                            r.resource
                        ),
                    ));
                }
                if let Some(refused) = immutable_refusal(r, name, have, &o) {
                    return Err(refused);
                }
                o["metadata"]["name"] = name.clone().into();
                if !ns.is_empty() {
                    o["metadata"]["namespace"] = ns.clone().into();
                }
                Ok((200, st.write(&r.collection, o)))
            }),
            ("PATCH", Some(name)) => {
                if content_type.starts_with("application/json-patch+json") {
                    Err(status(415, "UnsupportedMediaType", "JSON patch is not emulated"))
                } else {
                    parsed().and_then(|patch| {
                        let Some(mut o) = st.objects.get(&key(&r.collection, &ns, name)).cloned()
                        else {
                            return Err(missing(r, name));
                        };
                        let have = o.clone();
                        merge(&mut o, &patch);
                        if let Some(refused) = immutable_refusal(r, name, &have, &o) {
                            return Err(refused);
                        }
                        Ok((200, st.write(&r.collection, o)))
                    })
                }
            }
            ("DELETE", Some(name)) => match st.remove(&r.collection, &ns, name) {
                Some(o) => Ok((200, o)),
                None => Err(missing(r, name)),
            },
            _ => Err(status(405, "MethodNotAllowed", &format!("{method} is not allowed here"))),
        };
        drop(st);
        self.inner.changed.notify_all();
        out.unwrap_or_else(|e| e)
    }

    fn watch(&self, mut stream: TcpStream, r: &Route, params: &BTreeMap<String, String>) {
        let selectors = Selectors::of(params);
        let bookmarks = params.get("allowWatchBookmarks").map(String::as_str) == Some("true");
        let timeout = params
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(300u64);
        let until = Instant::now() + Duration::from_secs(timeout);
        let from: Option<u64> = params
            .get("resourceVersion")
            .filter(|v| !v.is_empty() && v.as_str() != "0")
            .map(|v| v.parse().unwrap_or(0));
        if write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        .is_err()
        {
            return;
        }
        let wanted = |collection: &str, namespace: &str, o: &Value| {
            selectors.want(r, collection, namespace, o)
        };
        // The chunks of each round are collected under the lock and written after it is
        // released: a slow reader must not hold up writers (or other watches).
        let (mut since, initial) = {
            let st = self.lock();
            match from {
                Some(v) if v < st.compacted => {
                    let e = status(
                        410,
                        "Expired",
                        &format!("too old resource version: {v} ({})", st.compacted),
                    )
                    .1;
                    drop(st);
                    let _ = chunk(&mut stream, &json!({"type": "ERROR", "object": e}));
                    let _ = write!(stream, "0\r\n\r\n");
                    return;
                }
                Some(v) => (v, Vec::new()),
                // No version: the current state first, as synthetic ADDED events.
                None => (
                    st.rv,
                    st.objects
                        .iter()
                        .filter(|((c, n, _), o)| wanted(c, n, o))
                        .map(|(_, o)| json!({"type": "ADDED", "object": o}))
                        .collect(),
                ),
            }
        };
        for c in &initial {
            if chunk(&mut stream, c).is_err() {
                return;
            }
        }
        let mut last_sent = Instant::now();
        while Instant::now() < until {
            let mut out: Vec<Value> = Vec::new();
            {
                let st = self.lock();
                let seen = since;
                for e in st.log.iter().filter(|e| e.rv > seen) {
                    since = e.rv;
                    if wanted(&e.collection, &e.namespace, &e.object) {
                        out.push(json!({"type": e.kind, "object": e.object}));
                    }
                }
                since = since.max(st.rv);
                if let (true, Some(every)) = (bookmarks, st.bookmark_every) {
                    // Events about to be sent count as sent now.
                    let idle = match out.is_empty() {
                        true => last_sent.elapsed(),
                        false => Duration::ZERO,
                    };
                    if idle >= every {
                        let (api_version, kind) = st.kind_of(r);
                        out.push(json!({"type": "BOOKMARK", "object": {
                            "apiVersion": api_version, "kind": kind,
                            "metadata": {"resourceVersion": since.to_string()}}}));
                    }
                }
            }
            for c in &out {
                if chunk(&mut stream, c).is_err() {
                    return;
                }
            }
            if !out.is_empty() {
                last_sent = Instant::now();
            }
            let st = self.lock();
            if st.rv > since {
                continue;
            }
            drop(
                self.inner
                    .changed
                    .wait_timeout(st, Duration::from_millis(100))
                    .unwrap_or_else(|p| p.into_inner())
                    .0,
            );
        }
        let _ = write!(stream, "0\r\n\r\n");
    }
}

impl State {
    fn write(&mut self, collection: &str, mut o: Value) -> Value {
        self.rv += 1;
        let rv = self.rv;
        if !o["metadata"].is_object() {
            o["metadata"] = json!({});
        }
        let ns = o["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
        let k = key(collection, &ns, &name);
        let old = self.objects.get(&k);
        match old.map(|p| p["metadata"]["uid"].clone()) {
            Some(uid) if !uid.is_null() => o["metadata"]["uid"] = uid,
            _ => {
                self.uid += 1;
                o["metadata"]["uid"] = format!("00000000-0000-4000-8000-{:012x}", self.uid).into();
            }
        }
        if o["metadata"]["creationTimestamp"].is_null() {
            o["metadata"]["creationTimestamp"] = old
                .map(|p| p["metadata"]["creationTimestamp"].clone())
                .filter(|t| !t.is_null())
                .unwrap_or_else(|| "2025-01-01T00:00:00Z".into());
        }
        o["metadata"]["resourceVersion"] = rv.to_string().into();
        let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        self.objects.insert(k, o.clone());
        self.log.push(Event {
            rv,
            collection: collection.to_string(),
            namespace: ns,
            kind,
            object: o.clone(),
        });
        o
    }

    fn remove(&mut self, collection: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut o = self.objects.remove(&key(collection, namespace, name))?;
        self.rv += 1;
        o["metadata"]["resourceVersion"] = self.rv.to_string().into();
        self.log.push(Event {
            rv: self.rv,
            collection: collection.to_string(),
            namespace: namespace.to_string(),
            kind: "DELETED",
            object: o.clone(),
        });
        Some(o)
    }

    /// The list's `apiVersion` and the objects' kind: from a stored object when there is
    /// one, else from the resource name.
    fn kind_of(&self, r: &Route) -> (String, String) {
        let stored = self
            .objects
            .iter()
            .find(|((c, _, _), _)| *c == r.collection)
            .and_then(|(_, o)| o["kind"].as_str().map(str::to_string));
        (
            r.api_version.clone(),
            stored.unwrap_or_else(|| kind_for(&r.resource)),
        )
    }

    fn list_page(&self, r: &Route, params: &BTreeMap<String, String>) -> (u16, Value) {
        let selectors = Selectors::of(params);
        let all: Vec<&Value> = self
            .objects
            .iter()
            .filter(|((c, n, _), o)| selectors.want(r, c, n, o))
            .map(|(_, o)| o)
            .collect();
        let start: usize = match params.get("continue") {
            Some(c) => match c.strip_prefix("emu-").and_then(|s| s.parse().ok()) {
                Some(n) => n,
                None => return status(400, "BadRequest", "invalid continue token"),
            },
            None => 0,
        };
        let limit = params
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let size = match (limit, self.page_size) {
            (Some(l), Some(p)) => l.min(p),
            (Some(n), None) | (None, Some(n)) => n,
            (None, None) => usize::MAX,
        };
        let end = start.saturating_add(size).min(all.len());
        let items: Vec<&Value> = all.get(start.min(all.len())..end).unwrap_or(&[]).to_vec();
        let mut meta = json!({"resourceVersion": self.rv.to_string()});
        if end < all.len() {
            meta["continue"] = format!("emu-{end}").into();
            meta["remainingItemCount"] = (all.len() - end).into();
        }
        let (api_version, kind) = self.kind_of(r);
        (
            200,
            json!({"apiVersion": api_version, "kind": format!("{kind}List"), "metadata": meta, "items": items}),
        )
    }
}

/// A resource path taken apart.
struct Route {
    /// `v1` or `<group>/<version>`.
    api_version: String,
    resource: String,
    /// The all-namespaces collection path (the store's key).
    collection: String,
    namespace: Option<String>,
    name: Option<String>,
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (prefix, api_version, rest) = match segs.as_slice() {
            ["api", v, rest @ ..] => (format!("/api/{v}"), v.to_string(), rest),
            ["apis", g, v, rest @ ..] => (format!("/apis/{g}/{v}"), format!("{g}/{v}"), rest),
            _ => return None,
        };
        let (resource, namespace, name) = match rest {
            [res] => (*res, None, None),
            [res, name] | [res, name, "status"] if *res != "namespaces" || rest.len() == 2 => {
                (*res, None, Some(*name))
            }
            ["namespaces", name, "status"] => ("namespaces", None, Some(*name)),
            ["namespaces", ns, res] => (*res, Some(*ns), None),
            ["namespaces", ns, res, name] | ["namespaces", ns, res, name, "status"] => {
                (*res, Some(*ns), Some(*name))
            }
            _ => return None,
        };
        if resource.is_empty() {
            return None;
        }
        Some(Route {
            api_version,
            resource: resource.to_string(),
            collection: format!("{prefix}/{resource}"),
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
        })
    }
}

fn key(collection: &str, namespace: &str, name: &str) -> Key {
    (
        collection.to_string(),
        namespace.to_string(),
        name.to_string(),
    )
}

/// `pods` → `Pod`, `networkpolicies` → `NetworkPolicy`, for resources with no stored object.
fn kind_for(resource: &str) -> String {
    let known = [
        ("pods", "Pod"),
        ("namespaces", "Namespace"),
        ("nodes", "Node"),
        ("configmaps", "ConfigMap"),
        ("services", "Service"),
        ("endpoints", "Endpoints"),
        ("daemonsets", "DaemonSet"),
        ("deployments", "Deployment"),
        ("networkpolicies", "NetworkPolicy"),
        ("servicecidrs", "ServiceCIDR"),
        ("podnetworkings", "PodNetworking"),
        ("leases", "Lease"),
    ];
    if let Some((_, k)) = known.iter().find(|(r, _)| *r == resource) {
        return k.to_string();
    }
    let singular = resource
        .strip_suffix("ies")
        .map(|s| format!("{s}y"))
        .or_else(|| resource.strip_suffix('s').map(str::to_string))
        .unwrap_or_else(|| resource.to_string());
    let mut c = singular.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "details": {}, "code": code}),
    )
}

/// The API server's validation of an update to a ConfigMap or Secret stored with
/// `immutable: true`: its data, binaryData and the flag itself cannot change, dropping the
/// flag included (422 Invalid); metadata can.
fn immutable_refusal(r: &Route, name: &str, have: &Value, new: &Value) -> Option<(u16, Value)> {
    let kind = match (r.api_version.as_str(), r.resource.as_str()) {
        ("v1", "configmaps") => "ConfigMap",
        ("v1", "secrets") => "Secret",
        _ => return None,
    };
    if have["immutable"] != true {
        return None;
    }
    let changed: Vec<&str> = ["data", "binaryData", "immutable"]
        .into_iter()
        .filter(|f| have[*f] != new[*f])
        .collect();
    if changed.is_empty() {
        return None;
    }
    let causes: Vec<String> = changed
        .iter()
        .map(|f| format!("{f}: Forbidden: field is immutable when `immutable` is set"))
        .collect();
    let message = if causes.len() == 1 {
        format!("{kind} \"{name}\" is invalid: {}", causes[0])
    } else {
        format!("{kind} \"{name}\" is invalid: [{}]", causes.join(", "))
    };
    Some(status(422, "Invalid", &message))
}

fn missing(r: &Route, name: &str) -> (u16, Value) {
    status(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", r.resource),
    )
}

fn not_found(path: &str) -> (u16, Value) {
    status(
        404,
        "NotFound",
        &format!("the server could not find the requested resource ({path})"),
    )
}

fn respond(stream: &mut TcpStream, code: u16, v: &Value) {
    let body = v.to_string();
    let reason = match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        _ => "Status",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// One watch event as a chunk of the chunked response, newline-terminated JSON.
fn chunk(stream: &mut TcpStream, event: &Value) -> std::io::Result<()> {
    let line = format!("{event}\n");
    write!(stream, "{:x}\r\n{line}\r\n", line.len())?;
    stream.flush()
}

/// JSON merge patch (RFC 7386): objects merge, `null` removes, anything else replaces.
fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (slot, Value::Object(b)) => {
            *slot = json!({});
            merge(slot, &Value::Object(b.clone()));
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// The `labelSelector` and `fieldSelector` of a list or a watch: the same objects answer both.
struct Selectors<'a> {
    labels: &'a str,
    fields: &'a str,
}

impl<'a> Selectors<'a> {
    fn of(params: &'a BTreeMap<String, String>) -> Self {
        let param = |key: &str| params.get(key).map(String::as_str).unwrap_or("");
        Selectors {
            labels: param("labelSelector"),
            fields: param("fieldSelector"),
        }
    }

    /// Whether the object `o`, stored in `collection` under `namespace`, is one the request
    /// for `r` asks for.
    fn want(&self, r: &Route, collection: &str, namespace: &str, o: &Value) -> bool {
        collection == r.collection
            && r.namespace.as_deref().is_none_or(|n| n == namespace)
            && matches_labels(o, self.labels)
            && matches_fields(o, self.fields)
    }
}

/// One term of a label or field selector, in the order the API server tries the operators.
enum Term<'s> {
    Ne(&'s str, &'s str),
    Eq(&'s str, &'s str),
    Absent(&'s str),
    Present(&'s str),
}

fn terms(selector: &str) -> impl Iterator<Item = Term<'_>> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                Term::Ne(k.trim(), v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Term::Eq(k.trim(), v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                Term::Absent(k.trim())
            } else {
                Term::Present(term)
            }
        })
}

fn matches_labels(o: &Value, selector: &str) -> bool {
    let labels = &o["metadata"]["labels"];
    let label = |k: &str| labels[k].as_str();
    terms(selector).all(|term| match term {
        Term::Ne(k, v) => label(k) != Some(v),
        Term::Eq(k, v) => label(k) == Some(v),
        Term::Absent(k) => label(k).is_none(),
        Term::Present(k) => label(k).is_some(),
    })
}

/// Field selectors only compare: a bare name (or `!name`) selects everything.
fn matches_fields(o: &Value, selector: &str) -> bool {
    let field = |path: &str| {
        let v = path.split('.').fold(o, |v, p| &v[p]);
        match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    };
    terms(selector).all(|term| match term {
        Term::Ne(k, v) => field(k) != v,
        Term::Eq(k, v) => field(k) == v,
        Term::Absent(_) | Term::Present(_) => true,
    })
}

/// Percent-decoding of a query value (`%3D` → `=`, `+` → space).
fn unescape(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&v[i + 1..i + 3], 16) {
                Ok(c) => {
                    out.push(c);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `<dir>/kubeconfig` pointing at `url` (context `emu`, a token user) and returns
/// its path.
pub fn kubeconfig(dir: &Path, url: &str) -> PathBuf {
    let p = dir.join("kubeconfig");
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emu\n  cluster:\n    server: {url}\n\
             contexts:\n- name: emu\n  context:\n    cluster: emu\n    user: u\ncurrent-context: emu\n\
             users:\n- name: u\n  user:\n    token: t\n"
        ),
    )
    .expect("write the kubeconfig");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let r = Route::parse("/api/v1/namespaces/kube-system/configmaps/x").unwrap();
        assert_eq!(
            (
                r.collection.as_str(),
                r.namespace.as_deref(),
                r.name.as_deref()
            ),
            ("/api/v1/configmaps", Some("kube-system"), Some("x"))
        );
        let r = Route::parse("/api/v1/namespaces/shop").unwrap();
        assert_eq!(
            (r.collection.as_str(), r.namespace, r.name.as_deref()),
            ("/api/v1/namespaces", None, Some("shop"))
        );
        let r = Route::parse("/apis/networking.k8s.io/v1/networkpolicies").unwrap();
        assert_eq!(r.api_version, "networking.k8s.io/v1");
        assert!(r.name.is_none() && r.namespace.is_none());
        let r = Route::parse("/api/v1/namespaces/shop/status").unwrap();
        assert_eq!(
            (r.collection.as_str(), r.name.as_deref()),
            ("/api/v1/namespaces", Some("shop"))
        );
        let r = Route::parse("/api/v1/nodes/a/status").unwrap();
        assert_eq!(r.name.as_deref(), Some("a"));
        assert!(Route::parse("/version").is_none());
        assert_eq!(kind_for("networkpolicies"), "NetworkPolicy");
        assert_eq!(kind_for("widgets"), "Widget");
    }

    #[test]
    fn selectors_and_escapes() {
        let o = json!({"metadata": {"name": "a", "labels": {"app": "web"}}, "spec": {"nodeName": "n1"}});
        assert!(matches_labels(&o, "app=web"));
        assert!(matches_labels(&o, "app==web,!tier"));
        assert!(!matches_labels(&o, "app!=web"));
        assert!(matches_fields(&o, "spec.nodeName=n1,metadata.name=a"));
        assert!(!matches_fields(&o, "spec.nodeName=n2"));
        assert_eq!(unescape("a%3Db%2Cc"), "a=b,c");
    }

    #[test]
    fn merge_patch() {
        let mut o = json!({"metadata": {"name": "a", "annotations": {"x": "1", "y": "2"}}});
        merge(
            &mut o,
            &json!({"metadata": {"annotations": {"x": null, "z": "3"}}}),
        );
        assert_eq!(o["metadata"]["annotations"], json!({"y": "2", "z": "3"}));
    }
}

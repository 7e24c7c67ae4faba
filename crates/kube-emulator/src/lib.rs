//! An emulated Kubernetes API server: enough of the wire protocol for kube-rs (`Api`,
//! watchers, reflectors) and for `kubectl` (get, apply, patch, edit, delete, wait) to run
//! against it with no cluster. It is the library behind `unicni kube-sim` and the test
//! tool of the crates that talk to the API.
//!
//! What it speaks (JSON only, HTTP/1.1 with keep-alive, plain or TLS, one thread per
//! connection):
//!
//! - discovery ([`discovery`]): `/version`, `/api`, `/api/v1`, `/apis`,
//!   `/apis/<group>/<version>`, and OpenAPI v3 documents without schemas;
//! - resource paths of the core group (`/api/v1/...`) and of named groups
//!   (`/apis/<group>/<version>/...`), cluster-scoped (`/api/v1/nodes/<name>`) and namespaced
//!   (`/api/v1/namespaces/<ns>/pods/<name>`, and all namespaces at `/api/v1/pods`); a
//!   `/status` subresource is the object itself;
//! - list with `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`,
//!   `k notin (a,b)`), `fieldSelector`
//!   (equality on a dotted path such as `metadata.name` or `spec.nodeName`), `limit` and
//!   `continue` (pages, optionally capped with [`Emulator::page_size`]), the collection's
//!   `resourceVersion` in `metadata`;
//! - watch (`watch=true`) from a `resourceVersion` (none or `0`: the current objects as
//!   `ADDED` first), `ADDED`/`MODIFIED`/`DELETED` events, `BOOKMARK`s when
//!   `allowWatchBookmarks=true`, `timeoutSeconds`, and `ERROR` 410 Expired for a version
//!   older than the kept history ([`Emulator::compact`], [`Emulator::history`]);
//! - get, create (`POST`, 409 AlreadyExists), replace (`PUT`, 409 Conflict on a stale
//!   `metadata.resourceVersion`), patch ([`patch`]: JSON merge, JSON patch, strategic
//!   merge; server-side apply bodies are merged strategically and create a missing
//!   object) and delete (a Namespace takes its objects with it), with `Status` objects
//!   for errors; immutable ConfigMaps and Secrets refuse changes to their data (422);
//! - bearer tokens when any are set ([`Emulator::add_token`]): 401 without a known one;
//! - counters by verb and resource ([`Emulator::counts`], and `/metrics` in the
//!   Prometheus text format) and the request log ([`Emulator::requests`]);
//! - fixed answers for other paths ([`Emulator::set_raw`]).
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

pub mod discovery;
mod http;
pub mod patch;
pub mod pki;
mod table;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use http::Request;

/// (collection, namespace, name); the collection is the all-namespaces path, e.g.
/// `/api/v1/pods` or `/apis/networking.k8s.io/v1/networkpolicies`.
type Key = (String, String, String);

/// How often an idle watch looks whether its client went away.
const CHECK_GONE: Duration = Duration::from_secs(5);

/// Events kept for watches by default; a watch from before them gets 410 Expired.
const HISTORY: usize = 10_000;

struct Event {
    rv: u64,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    kind: &'static str,
    collection: String,
    namespace: String,
    object: Arc<Value>,
    /// The event as sent (`{"type":...,"object":...}` and a newline), serialized once for
    /// every watcher.
    line: Arc<str>,
}

struct State {
    rv: u64,
    /// Watches from a version below this one are answered 410 Expired.
    compacted: u64,
    uid: u64,
    objects: BTreeMap<Key, Arc<Value>>,
    log: VecDeque<Event>,
    history: usize,
    raw: BTreeMap<String, Value>,
    requests: VecDeque<String>,
    keep_requests: Option<usize>,
    counts: BTreeMap<(String, String), u64>,
    tokens: BTreeSet<String>,
    page_size: Option<usize>,
    bookmark_every: Option<Duration>,
    /// The request being answered is a dry run (`dryRun=All`): writes return what they
    /// would store and change nothing.
    dry_run: bool,
}

/// The labels of the request counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    resource: String,
}

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    bytes: Family<RequestLabels, Counter>,
    watches: Gauge,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kube_sim");
        let requests = Family::<RequestLabels, Counter>::default();
        let bytes = Family::<RequestLabels, Counter>::default();
        let watches = Gauge::default();
        registry.register(
            "requests",
            "API requests served, by verb (get, list, watch, create, update, patch, delete) and resource",
            requests.clone(),
        );
        registry.register(
            "response_bytes",
            "Bytes of response bodies and watch events sent, by verb and resource",
            bytes.clone(),
        );
        registry.register("watches", "Watches open now", watches.clone());
        Metrics {
            registry,
            requests,
            bytes,
            watches,
        }
    }
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    metrics: Metrics,
}

/// The emulated API server: a handle on its objects (cheap to clone, every clone is the
/// same server). Serve it with [`Emulator::start`], [`Emulator::serve`] or
/// [`Emulator::serve_tls`].
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

impl Default for Emulator {
    fn default() -> Self {
        Self::new()
    }
}

/// A seed file or object the server cannot take.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("parse the objects (JSON or YAML: one object, a v1 List or several YAML documents)")]
    Parse(#[from] serde_yaml::Error),
    #[error("document {index} is not an object (a mapping with apiVersion, kind and metadata)")]
    NotAnObject { index: usize },
    #[error("object {index} ({api_version}/{kind} {name:?}) is of a type this server does not serve; served: {served}")]
    UnknownKind {
        index: usize,
        api_version: String,
        kind: String,
        name: String,
        served: String,
    },
    #[error("object {index} has no metadata.name")]
    NoName { index: usize },
}

impl Emulator {
    pub fn new() -> Emulator {
        let state = State {
            rv: 0,
            compacted: 0,
            uid: 0,
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            history: HISTORY,
            raw: BTreeMap::new(),
            requests: VecDeque::new(),
            keep_requests: None,
            counts: BTreeMap::new(),
            tokens: BTreeSet::new(),
            page_size: None,
            bookmark_every: Some(Duration::from_secs(1)),
            dry_run: false,
        };
        Emulator {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                changed: Condvar::new(),
                metrics: Metrics::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Listens on 127.0.0.1 (a free port) in the calling thread's network namespace and
    /// serves plain HTTP there; returns the base URL.
    pub fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the emulated API server");
        self.serve(listener)
    }

    /// Serves plain HTTP on `listener` (bound wherever the test needs it, e.g. inside a
    /// network namespace) from background threads; returns the base URL.
    pub fn serve(&self, listener: TcpListener) -> String {
        let url = format!(
            "http://{}",
            listener.local_addr().expect("listener address")
        );
        http::serve(self.clone(), listener, None);
        url
    }

    /// Serves HTTPS on `listener` with `tls` (see [`pki::Pki`]); returns the base URL.
    pub fn serve_tls(&self, listener: TcpListener, tls: Arc<rustls::ServerConfig>) -> String {
        let url = format!(
            "https://{}",
            listener.local_addr().expect("listener address")
        );
        http::serve(self.clone(), listener, Some(tls));
        url
    }

    /// Accepts `token` as a bearer token. Once any token is set, every request but the
    /// health checks needs one of them (401 Unauthorized otherwise).
    pub fn add_token(&self, token: &str) {
        self.lock().tokens.insert(token.to_string());
    }

    /// Largest page a list returns, whatever `limit` the client asks for.
    pub fn page_size(&self, n: usize) {
        self.lock().page_size = Some(n.max(1));
    }

    /// How often an idle watch that asked for bookmarks gets one (`None`: never).
    pub fn bookmark_every(&self, every: Option<Duration>) {
        self.lock().bookmark_every = every;
    }

    /// How many events are kept for watches (default 10,000); a watch from before the
    /// oldest kept one gets 410 Expired, as from a compacted etcd.
    pub fn history(&self, events: usize) {
        let mut st = self.lock();
        st.history = events.max(1);
        st.trim();
    }

    /// Keeps only the last `n` request lines (default: all).
    pub fn keep_requests(&self, n: Option<usize>) {
        let mut st = self.lock();
        st.keep_requests = n;
        st.trim_requests();
    }

    /// A fixed JSON answer for `GET path` (a path with a query string matches exactly that
    /// request; otherwise the query is ignored). Takes precedence over discovery.
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
            .map(|o| Value::clone(o))
    }

    /// Every object of `collection` (the all-namespaces path, e.g. `/api/v1/events`).
    pub fn list(&self, collection: &str) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|((c, _, _), _)| c == collection)
            .map(|(_, o)| Value::clone(o))
            .collect()
    }

    /// Creates the namespace `name` unless it exists.
    pub fn ensure_namespace(&self, name: &str) {
        if self.get("/api/v1/namespaces", "", name).is_none() {
            self.put(
                "/api/v1/namespaces",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
                       "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
            );
        }
    }

    /// Stores `objects` (each with `apiVersion`, `kind` and `metadata.name`; namespaced
    /// ones without a namespace go to `default`), replacing any of the same name. Returns
    /// how many.
    pub fn load(&self, objects: Vec<Value>) -> Result<usize, SeedError> {
        let mut placed = Vec::new();
        for (index, mut o) in objects.into_iter().enumerate() {
            let api_version = o["apiVersion"].as_str().unwrap_or("").to_string();
            let kind = o["kind"].as_str().unwrap_or("").to_string();
            let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
            let Some(r) = discovery::by_kind(&api_version, &kind) else {
                return Err(SeedError::UnknownKind {
                    index,
                    api_version,
                    kind,
                    name,
                    served: discovery::RESOURCES
                        .iter()
                        .map(|r| format!("{}/{}", r.group_version(), r.kind))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            if name.is_empty() {
                return Err(SeedError::NoName { index });
            }
            if r.namespaced && o["metadata"]["namespace"].as_str().unwrap_or("").is_empty() {
                o["metadata"]["namespace"] = "default".into();
            }
            placed.push((r.collection(), o));
        }
        let n = placed.len();
        for (collection, o) in placed {
            self.put(&collection, o);
        }
        Ok(n)
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
        self.lock().requests.iter().cloned().collect()
    }

    /// API requests served so far, by (verb, resource): verbs as the API server's audit
    /// log names them (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`),
    /// resources by their plural (`nodes`, `configmaps`; a subresource as `nodes/status`).
    pub fn counts(&self) -> BTreeMap<(String, String), u64> {
        self.lock().counts.clone()
    }

    /// The counters in the Prometheus text format (what `/metrics` answers).
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.metrics.registry);
        out
    }

    /// Serves one request; returns whether the connection may carry another.
    fn dispatch<W: Write>(
        &self,
        req: Request,
        out: &mut W,
        gone: &http::Gone,
    ) -> std::io::Result<bool> {
        let keep = req.keep_alive;
        let health = ["/healthz", "/livez", "/readyz"]
            .iter()
            .any(|h| req.path == *h || req.path.starts_with(&format!("{h}/")));
        let authorized = {
            let mut st = self.lock();
            st.requests.push_back(req.line.clone());
            st.trim_requests();
            st.tokens.is_empty()
                || health
                || req
                    .authorization
                    .as_deref()
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .is_some_and(|t| st.tokens.contains(t.trim()))
        };
        if !authorized {
            let body = status(401, "Unauthorized", "Unauthorized").1.to_string();
            http::respond(out, 401, "application/json", body.as_bytes(), keep)?;
            return Ok(keep);
        }
        if health {
            http::respond(out, 200, "text/plain; charset=utf-8", b"ok", keep)?;
            return Ok(keep);
        }
        if req.method == "GET" && req.path == "/metrics" {
            let text = self.metrics_text();
            let ct = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            http::respond(out, 200, ct, text.as_bytes(), keep)?;
            return Ok(keep);
        }
        let Some(r) = Route::parse(&req.path) else {
            let raw = {
                let st = self.lock();
                st.raw
                    .get(req.target.as_str())
                    .or_else(|| st.raw.get(req.path.as_str()))
                    .cloned()
            };
            let (code, v) = match (req.method.as_str(), raw) {
                ("GET", Some(v)) => (200, v),
                ("GET", None) => match discovery::answer(&req.path) {
                    Some(v) => (200, v),
                    None => not_found(&req.path),
                },
                _ => not_found(&req.path),
            };
            http::respond(
                out,
                code,
                "application/json",
                v.to_string().as_bytes(),
                keep,
            )?;
            return Ok(keep);
        };
        let verb = verb(&req.method, &r, &req.params);
        let labels = RequestLabels {
            verb: verb.to_string(),
            resource: r.label(),
        };
        self.inner.metrics.requests.get_or_create(&labels).inc();
        *self
            .lock()
            .counts
            .entry((labels.verb.clone(), labels.resource.clone()))
            .or_default() += 1;
        if verb == "watch" {
            self.inner.metrics.watches.inc();
            let sent = self.watch(out, &r, &req.params, table::wanted(&req.accept), gone);
            self.inner.metrics.watches.dec();
            self.inner.metrics.bytes.get_or_create(&labels).inc_by(sent);
            return Ok(false);
        }
        let (code, v) = self.answer(&req, &r);
        let body = v.to_string();
        self.inner
            .metrics
            .bytes
            .get_or_create(&labels)
            .inc_by(body.len() as u64);
        http::respond(out, code, "application/json", body.as_bytes(), keep)?;
        Ok(keep)
    }

    fn answer(&self, req: &Request, r: &Route) -> (u16, Value) {
        let body = &req.body;
        let media = req.content_type.split(';').next().unwrap_or("").trim();
        let parsed = || -> Result<Value, (u16, Value)> {
            if !matches!(media, "" | "application/json" | "*/*") {
                // Protobuf (kubectl's typed clients try it first) is not spoken: 415 makes
                // client-go send JSON instead.
                return Err(status(
                    415,
                    "UnsupportedMediaType",
                    &format!("the body of the request was in an unknown format - accepted media types include: application/json (got {media:?})"),
                ));
            }
            serde_json::from_slice(body).map_err(|e| {
                status(
                    400,
                    "BadRequest",
                    &format!("the request body is not JSON: {e}"),
                )
            })
        };
        let ns = r.namespace.clone().unwrap_or_default();
        let mut st = self.lock();
        st.dry_run = req.params.contains_key("dryRun");
        let out = match (req.method.as_str(), &r.name) {
            ("GET", None) => Ok(st.list_page(r, &req.params)),
            ("GET", Some(name)) => match st.objects.get(&key(&r.collection, &ns, name)) {
                Some(o) => Ok((200, Value::clone(o))),
                None => Err(missing(r, name)),
            },
            ("POST", None) => parsed().and_then(|o| st.create(r, o)),
            ("PUT", Some(name)) => parsed().and_then(|mut o| {
                let Some(have) = st.objects.get(&key(&r.collection, &ns, name)).cloned() else {
                    return Err(missing(r, name));
                };
                let wanted = o["metadata"]["resourceVersion"].as_str().unwrap_or("");
                if !wanted.is_empty()
                    && Some(wanted) != have["metadata"]["resourceVersion"].as_str()
                {
                    return Err(conflict(r, name));
                }
                if let Some(refused) = immutable_refusal(r, name, &have, &o) {
                    return Err(refused);
                }
                o["metadata"]["name"] = name.clone().into();
                if !ns.is_empty() {
                    o["metadata"]["namespace"] = ns.clone().into();
                }
                Ok((200, st.write(&r.collection, o)))
            }),
            ("PATCH", Some(name)) => st.patch(r, name, &req.content_type, body),
            ("DELETE", Some(name)) => match st.remove(&r.collection, &ns, name) {
                Some(o) => {
                    if r.collection == "/api/v1/namespaces" {
                        st.remove_namespace_contents(name);
                    }
                    Ok((200, o))
                }
                None => Err(missing(r, name)),
            },
            (method, _) => Err(status(
                405,
                "MethodNotAllowed",
                &format!("{method} is not supported on {}", req.path),
            )),
        };
        st.dry_run = false;
        drop(st);
        self.inner.changed.notify_all();
        match out {
            Ok((200, v)) if req.method == "GET" && table::wanted(&req.accept) => {
                (200, as_table(&v))
            }
            Ok(answer) | Err(answer) => answer,
        }
    }

    /// Streams a watch until its timeout or until the client goes away; returns the bytes
    /// of the events sent.
    fn watch<W: Write>(
        &self,
        out: &mut W,
        r: &Route,
        params: &BTreeMap<String, String>,
        tables: bool,
        gone: &http::Gone,
    ) -> u64 {
        let selectors = Selectors::of(params);
        let bookmarks = params.get("allowWatchBookmarks").map(String::as_str) == Some("true");
        // Each event as sent: shared, or as a one-row Table for `kubectl get --watch`.
        let event = |kind: &str, o: &Value, shared: Option<&Arc<str>>| -> Arc<str> {
            match (tables, shared) {
                (false, Some(line)) => line.clone(),
                (false, None) => Arc::from(format!("{}\n", json!({"type": kind, "object": o}))),
                (true, _) => Arc::from(format!(
                    "{}\n",
                    json!({"type": kind, "object": as_table(o)})
                )),
            }
        };
        let timeout = params
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1800u64);
        let until = Instant::now() + Duration::from_secs(timeout);
        let from: Option<u64> = params
            .get("resourceVersion")
            .filter(|v| !v.is_empty() && v.as_str() != "0")
            .map(|v| v.parse().unwrap_or(0));
        if http::stream_head(out).is_err() {
            return 0;
        }
        let mut sent = 0u64;
        let mut send = |out: &mut W, line: &str| -> bool {
            sent += line.len() as u64;
            write!(out, "{:x}\r\n{line}\r\n", line.len())
                .and_then(|_| out.flush())
                .is_ok()
        };
        let wanted = |collection: &str, namespace: &str, o: &Value| {
            selectors.want(r, collection, namespace, o)
        };
        // The chunks of each round are collected under the lock and written after it is
        // released: a slow reader must not hold up writers (or other watches).
        let (mut since, initial): (u64, Vec<Arc<str>>) = {
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
                    send(out, &format!("{}\n", json!({"type": "ERROR", "object": e})));
                    let _ = http::end_stream(out);
                    return sent;
                }
                Some(v) => (v, Vec::new()),
                // No version: the current state first, as synthetic ADDED events.
                None => (
                    st.rv,
                    st.objects
                        .iter()
                        .filter(|((c, n, _), o)| wanted(c, n, o))
                        .map(|(_, o)| event("ADDED", o, None))
                        .collect(),
                ),
            }
        };
        for line in &initial {
            if !send(out, line) {
                return sent;
            }
        }
        drop(initial);
        let mut last_sent = Instant::now();
        let mut last_check = Instant::now();
        loop {
            let now = Instant::now();
            if now >= until {
                break;
            }
            let mut lines: Vec<Arc<str>> = Vec::new();
            let every;
            {
                let st = self.lock();
                every = st.bookmark_every.filter(|_| bookmarks);
                let seen = since;
                let first = st.log.partition_point(|e| e.rv <= seen);
                for e in st.log.range(first..) {
                    if wanted(&e.collection, &e.namespace, &e.object) {
                        lines.push(event(e.kind, &e.object, Some(&e.line)));
                    }
                }
                since = since.max(st.rv);
                if let Some(every) = every {
                    if lines.is_empty() && last_sent.elapsed() >= every {
                        let (api_version, kind) = st.kind_of(r);
                        let b = json!({"type": "BOOKMARK", "object": {
                            "apiVersion": api_version, "kind": kind,
                            "metadata": {"resourceVersion": since.to_string()}}});
                        lines.push(Arc::from(format!("{b}\n")));
                    }
                }
            }
            for line in &lines {
                if !send(out, line) {
                    return sent;
                }
            }
            if !lines.is_empty() {
                last_sent = Instant::now();
            }
            if last_check.elapsed() >= CHECK_GONE {
                if gone.check() {
                    return sent;
                }
                last_check = Instant::now();
            }
            let st = self.lock();
            if st.rv > since {
                continue;
            }
            // Sleep until a write, the next bookmark, the next look at the client or the
            // end, whichever comes first.
            let mut wait = until
                .saturating_duration_since(Instant::now())
                .min(CHECK_GONE);
            if let Some(every) = every {
                wait = wait.min(every.saturating_sub(last_sent.elapsed()));
            }
            let wait = wait.max(Duration::from_millis(10));
            drop(
                self.inner
                    .changed
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0,
            );
        }
        let _ = http::end_stream(out);
        sent
    }
}

/// An object or a list as a Table.
fn as_table(v: &Value) -> Value {
    let kind = v["kind"].as_str().unwrap_or("");
    match v["items"].as_array() {
        Some(items) if kind.ends_with("List") => {
            let items: Vec<&Value> = items.iter().collect();
            table::of(kind.trim_end_matches("List"), &items, v["metadata"].clone())
        }
        _ => table::of(
            kind,
            &[v],
            json!({"resourceVersion": v["metadata"]["resourceVersion"]}),
        ),
    }
}

/// The verb of a request on a resource path, as the API server's audit log names it.
fn verb(method: &str, r: &Route, params: &BTreeMap<String, String>) -> &'static str {
    let watch = matches!(params.get("watch").map(String::as_str), Some("true" | "1"));
    match (method, r.name.is_some()) {
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        _ => "other",
    }
}

/// Now, as the API server writes timestamps (RFC 3339, seconds, UTC).
fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl State {
    fn trim(&mut self) {
        while self.log.len() > self.history {
            if let Some(e) = self.log.pop_front() {
                // A watch from e.rv itself still sees everything after it.
                self.compacted = self.compacted.max(e.rv);
            }
        }
    }

    fn trim_requests(&mut self) {
        if let Some(n) = self.keep_requests {
            while self.requests.len() > n {
                self.requests.pop_front();
            }
        }
    }

    fn record(
        &mut self,
        rv: u64,
        kind: &'static str,
        collection: &str,
        namespace: &str,
        o: Value,
    ) -> Arc<Value> {
        let line = format!("{{\"type\":\"{kind}\",\"object\":{o}}}\n");
        let object = Arc::new(o);
        self.log.push_back(Event {
            rv,
            kind,
            collection: collection.to_string(),
            namespace: namespace.to_string(),
            object: object.clone(),
            line: Arc::from(line),
        });
        self.trim();
        object
    }

    fn write(&mut self, collection: &str, mut o: Value) -> Value {
        let rv = self.rv + 1;
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
                .unwrap_or_else(|| timestamp().into());
        }
        let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        if self.dry_run {
            return o;
        }
        self.rv = rv;
        o["metadata"]["resourceVersion"] = rv.to_string().into();
        let stored = self.record(rv, kind, collection, &ns, o.clone());
        self.objects.insert(k, stored);
        o
    }

    fn remove(&mut self, collection: &str, namespace: &str, name: &str) -> Option<Value> {
        if self.dry_run {
            return self
                .objects
                .get(&key(collection, namespace, name))
                .map(|o| Value::clone(o));
        }
        let o = self.objects.remove(&key(collection, namespace, name))?;
        self.rv += 1;
        let mut o = Value::clone(&o);
        o["metadata"]["resourceVersion"] = self.rv.to_string().into();
        self.record(self.rv, "DELETED", collection, namespace, o.clone());
        Some(o)
    }

    /// What deleting a Namespace leads to (after its finalizer ran): its objects are gone.
    fn remove_namespace_contents(&mut self, namespace: &str) {
        if self.dry_run {
            return;
        }
        let doomed: Vec<Key> = self
            .objects
            .keys()
            .filter(|(_, n, _)| n == namespace)
            .cloned()
            .collect();
        for (c, n, name) in doomed {
            self.remove(&c, &n, &name);
        }
    }

    fn create(&mut self, r: &Route, mut o: Value) -> Result<(u16, Value), (u16, Value)> {
        if !o.is_object() {
            return Err(status(
                400,
                "BadRequest",
                "the object must be a JSON object",
            ));
        }
        if !o["metadata"].is_object() {
            o["metadata"] = json!({});
        }
        if let Some(n) = &r.namespace {
            o["metadata"]["namespace"] = n.clone().into();
        }
        if o["apiVersion"].is_null() {
            o["apiVersion"] = r.api_version.clone().into();
        }
        if o["kind"].is_null() {
            o["kind"] = kind_for(&r.resource).into();
        }
        let mut name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
        if name.is_empty() {
            if let Some(prefix) = o["metadata"]["generateName"].as_str() {
                self.uid += 1;
                name = format!("{prefix}{:05x}", self.uid & 0xfffff);
                o["metadata"]["name"] = name.clone().into();
            }
        }
        if name.is_empty() {
            let kind = o["kind"].as_str().unwrap_or("object").to_string();
            return Err(status(
                422,
                "Invalid",
                &format!("{kind} \"\" is invalid: metadata.name: Required value: name or generateName is required"),
            ));
        }
        let o_ns = o["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if self.objects.contains_key(&key(&r.collection, &o_ns, &name)) {
            return Err(status(
                409,
                "AlreadyExists",
                &format!("{} \"{name}\" already exists", r.resource),
            ));
        }
        Ok((201, self.write(&r.collection, o)))
    }

    fn patch(
        &mut self,
        r: &Route,
        name: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(u16, Value), (u16, Value)> {
        let ns = r.namespace.clone().unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or("").trim();
        let apply = media == "application/apply-patch+yaml";
        let patch: Value = if apply {
            serde_yaml::from_slice(body).map_err(|e| {
                status(
                    400,
                    "BadRequest",
                    &format!("the apply body is not YAML: {e}"),
                )
            })?
        } else {
            serde_json::from_slice(body)
                .map_err(|e| status(400, "BadRequest", &format!("the patch is not JSON: {e}")))?
        };
        let Some(have) = self.objects.get(&key(&r.collection, &ns, name)).cloned() else {
            if apply {
                // Server-side apply creates what is not there.
                let mut o = patch;
                o["metadata"]["name"] = name.into();
                return self.create(r, o);
            }
            return Err(missing(r, name));
        };
        let mut o = Value::clone(&have);
        let kind = have["kind"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| kind_for(&r.resource));
        let invalid = |e: patch::PatchError| status(422, "Invalid", &e.to_string());
        match media {
            "application/json-patch+json" => patch::json(&mut o, &patch).map_err(invalid)?,
            "application/merge-patch+json" => patch::merge(&mut o, &patch),
            "application/strategic-merge-patch+json" | "application/apply-patch+yaml" => {
                patch::strategic(&mut o, &patch, &kind).map_err(invalid)?
            }
            other => {
                return Err(status(
                    415,
                    "UnsupportedMediaType",
                    &format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"),
                ))
            }
        }
        // A resourceVersion in a patch is a precondition.
        if let Some(wanted) = patch["metadata"]["resourceVersion"].as_str() {
            if Some(wanted) != have["metadata"]["resourceVersion"].as_str() {
                return Err(conflict(r, name));
            }
        }
        // What a patch cannot change.
        o["metadata"]["name"] = name.into();
        if !ns.is_empty() {
            o["metadata"]["namespace"] = ns.clone().into();
        }
        o["metadata"]["uid"] = have["metadata"]["uid"].clone();
        o["metadata"]["creationTimestamp"] = have["metadata"]["creationTimestamp"].clone();
        if let Some(refused) = immutable_refusal(r, name, &have, &o) {
            return Err(refused);
        }
        if o == *have {
            // No change: no new version, no event (as the real server does).
            return Ok((200, o));
        }
        Ok((200, self.write(&r.collection, o)))
    }

    /// The list's `apiVersion` and the objects' kind: from a stored object when there is
    /// one, else from the resource name.
    fn kind_of(&self, r: &Route) -> (String, String) {
        let stored = self
            .objects
            .range(key(&r.collection, "", "")..)
            .take_while(|((c, _, _), _)| *c == r.collection)
            .find_map(|(_, o)| o["kind"].as_str().map(str::to_string));
        (
            r.api_version.clone(),
            stored.unwrap_or_else(|| kind_for(&r.resource)),
        )
    }

    fn list_page(&self, r: &Route, params: &BTreeMap<String, String>) -> (u16, Value) {
        let selectors = Selectors::of(params);
        let all: Vec<&Arc<Value>> = self
            .objects
            .range(key(&r.collection, "", "")..)
            .take_while(|((c, _, _), _)| *c == r.collection)
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
        let items: Vec<&Value> = all
            .get(start.min(all.len())..end)
            .unwrap_or(&[])
            .iter()
            .map(|o| o.as_ref())
            .collect();
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

/// Objects from a JSON or YAML text: one object, a `List` (its items), or several YAML
/// documents.
pub fn parse_objects(text: &str) -> Result<Vec<Value>, SeedError> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        match v {
            Value::Null => {}
            Value::Object(_) => {}
            _ => return Err(SeedError::NotAnObject { index }),
        }
        match v {
            Value::Null => {}
            v if v["kind"].as_str().is_some_and(|k| k.ends_with("List"))
                && v["items"].is_array() =>
            {
                if let Value::Array(items) = v["items"].clone() {
                    out.extend(items);
                }
            }
            v => out.push(v),
        }
    }
    Ok(out)
}

fn conflict(r: &Route, name: &str) -> (u16, Value) {
    status(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            r.resource
        ),
    )
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
    /// A request on the `/status` subresource.
    status: bool,
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
            status: matches!(rest, [_, _, "status"] | [_, _, _, _, "status"]),
            api_version,
            resource: resource.to_string(),
            collection: format!("{prefix}/{resource}"),
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
        })
    }
}

impl Route {
    /// The resource as counters name it (`nodes`, `nodes/status`).
    fn label(&self) -> String {
        match self.status {
            true => format!("{}/status", self.resource),
            false => self.resource.clone(),
        }
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
    let cause = "Forbidden: field is immutable when `immutable` is set";
    let messages: Vec<String> = changed.iter().map(|f| format!("{f}: {cause}")).collect();
    let message = if messages.len() == 1 {
        format!("{kind} \"{name}\" is invalid: {}", messages[0])
    } else {
        format!("{kind} \"{name}\" is invalid: [{}]", messages.join(", "))
    };
    let (code, mut v) = status(422, "Invalid", &message);
    // kubectl edit shows the causes in the file it opens again.
    v["details"] = json!({"name": name, "kind": kind, "causes": changed.iter().map(|f| json!({
        "reason": "FieldValueForbidden", "message": cause, "field": f})).collect::<Vec<_>>()});
    Some((code, v))
}

fn missing(r: &Route, name: &str) -> (u16, Value) {
    let (code, mut v) = status(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", r.resource),
    );
    v["details"] = json!({"name": name, "kind": r.resource});
    (code, v)
}

fn not_found(path: &str) -> (u16, Value) {
    status(
        404,
        "NotFound",
        &format!("the server could not find the requested resource ({path})"),
    )
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
    /// `k in (a,b)`; the values as written between the parentheses.
    In(&'s str, &'s str),
    NotIn(&'s str, &'s str),
}

/// The terms of a selector: split at commas outside parentheses (`k in (a,b)` is one).
fn terms(selector: &str) -> impl Iterator<Item = Term<'_>> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&selector[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| {
            let set = |op: &str| {
                let (k, rest) = term.split_once(op)?;
                let values = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
                Some((k.trim(), values))
            };
            if let Some((k, v)) = set(" notin ") {
                Term::NotIn(k, v)
            } else if let Some((k, v)) = set(" in ") {
                Term::In(k, v)
            } else if let Some((k, v)) = term.split_once("!=") {
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

fn in_set(values: &str, v: Option<&str>) -> bool {
    v.is_some_and(|v| values.split(',').any(|x| x.trim() == v))
}

fn matches_labels(o: &Value, selector: &str) -> bool {
    let labels = &o["metadata"]["labels"];
    let label = |k: &str| labels[k].as_str();
    terms(selector).all(|term| match term {
        Term::Ne(k, v) => label(k) != Some(v),
        Term::Eq(k, v) => label(k) == Some(v),
        Term::Absent(k) => label(k).is_none(),
        Term::Present(k) => label(k).is_some(),
        Term::In(k, vs) => in_set(vs, label(k)),
        Term::NotIn(k, vs) => !in_set(vs, label(k)),
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
        Term::Absent(_) | Term::Present(_) | Term::In(..) | Term::NotIn(..) => true,
    })
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
        assert!(matches_labels(&o, "app in (db, web),tier notin (x)"));
        assert!(!matches_labels(&o, "app notin (web),app"));
        assert!(!matches_labels(&o, "tier in (x,y)"));
        assert!(matches_fields(&o, "spec.nodeName=n1,metadata.name=a"));
        assert!(!matches_fields(&o, "spec.nodeName=n2"));
    }

    #[test]
    fn seeds_as_lists_documents_and_objects() {
        let objects = parse_objects(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n\
             {\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\
             {\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"p\"}}]}\n",
        )
        .unwrap();
        assert_eq!(objects.len(), 2);
        let emu = Emulator::new();
        assert_eq!(emu.load(objects).unwrap(), 2);
        assert!(emu.get("/api/v1/pods", "default", "p").is_some());
        assert!(matches!(
            parse_objects("just text\n"),
            Err(SeedError::NotAnObject { index: 0 })
        ));
        let odd = parse_objects("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n");
        let err = emu.load(odd.unwrap()).unwrap_err().to_string();
        assert!(
            err.contains("example.com/v1/Widget") && err.contains("v1/Node"),
            "{err}"
        );
    }

    #[test]
    fn merge_patch() {
        let mut o = json!({"metadata": {"name": "a", "annotations": {"x": "1", "y": "2"}}});
        patch::merge(
            &mut o,
            &json!({"metadata": {"annotations": {"x": null, "z": "3"}}}),
        );
        assert_eq!(o["metadata"]["annotations"], json!({"y": "2", "z": "3"}));
    }
}

//! The emulator as a value the lab embeds (`CloudSim`), and its HTTP front (hyper):
//! `/` is the RPC API, `/latest/...` and `/instances/<id>/latest/...` the metadata
//! service, `/_sim/...` a small admin API for the lab.

use crate::api;
use crate::auth::{self, NonceCache};
use crate::config::{InstanceSpec, SimConfig};
use crate::error::{ApiError, SimError};
use crate::events::SimEvent;
use crate::faults::{FaultConfig, Faults};
use crate::latency::{Latencies, Profile};
use crate::metadata::{self, Tokens};
use crate::params::Params;
use crate::persist;
use crate::state::{Deferred, Settings, State};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

struct Inner {
    state: Mutex<State>,
    config: SimConfig,
    state_file: Option<PathBuf>,
    faults: Faults,
    nonces: NonceCache,
    tokens: Tokens,
    events: broadcast::Sender<SimEvent>,
    latencies: Latencies,
    requests: Mutex<RequestLog>,
}

/// One API request as the emulator saw it (after authentication).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRecord {
    pub action: String,
    /// The request's parameters without the signature's (`Signature*`, `AccessKeyId`,
    /// `Timestamp`, `SecurityToken`).
    pub params: BTreeMap<String, String>,
    /// The HTTP status answered.
    pub status: u16,
}

/// The last [`REQUEST_LOG_CAP`] requests, and counts by action since the start.
#[derive(Debug, Default)]
struct RequestLog {
    recent: VecDeque<RequestRecord>,
    counts: BTreeMap<String, u64>,
}

/// Requests kept in the log (the counts cover all of them).
pub const REQUEST_LOG_CAP: usize = 10_000;

const SIGNATURE_PARAMS: &[&str] = &[
    "Signature",
    "SignatureMethod",
    "SignatureNonce",
    "SignatureVersion",
    "SignatureType",
    "AccessKeyId",
    "Timestamp",
    "SecurityToken",
];

/// The emulated region. Cheap to clone; every clone is the same region.
#[derive(Clone)]
pub struct CloudSim {
    inner: Arc<Inner>,
}

impl CloudSim {
    /// Loads `state_file` when it exists, else builds the region from `config`; with a
    /// state file, every change is written back to it.
    pub fn new(config: SimConfig, state_file: Option<PathBuf>) -> Result<Self, SimError> {
        config.faults.validate().map_err(SimError::Config)?;
        let mut state = match &state_file {
            Some(p) => match persist::load(p)? {
                Some(st) => st,
                None => State::from_config(&config)?,
            },
            None => State::from_config(&config)?,
        };
        state.settings = Settings::from_config(&config);
        let (events, _) = broadcast::channel(1024);
        let sim = Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                faults: Faults::new(config.faults.clone()),
                latencies: Latencies::new(&config),
                config,
                state_file,
                nonces: NonceCache::default(),
                tokens: Tokens::default(),
                events,
                requests: Mutex::new(RequestLog::default()),
            }),
        };
        sim.save()?;
        Ok(sim)
    }

    /// Every change the cloud makes, as it happens.
    pub fn subscribe(&self) -> broadcast::Receiver<SimEvent> {
        self.inner.events.subscribe()
    }

    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    pub fn set_faults(&self, f: FaultConfig) -> Result<(), SimError> {
        f.validate().map_err(SimError::Config)?;
        self.inner.faults.set_config(f);
        Ok(())
    }

    /// A copy of the whole region, for assertions and the `/_sim/state` endpoint.
    pub fn snapshot(&self) -> State {
        self.inner.state.lock().expect("state lock").clone()
    }

    /// Runs `f` on the state, then publishes its events and schedules its deferred
    /// changes; the state file is written when `save` is set.
    pub fn with_state<R>(&self, save: bool, f: impl FnOnce(&mut State) -> R) -> R {
        let (r, events, deferred) = {
            let mut st = self.inner.state.lock().expect("state lock");
            let r = f(&mut st);
            (
                r,
                std::mem::take(&mut st.events),
                std::mem::take(&mut st.deferred),
            )
        };
        for ev in events {
            let _ = self.inner.events.send(ev);
        }
        for (delay, d) in deferred {
            // The state asked for the profile's median; the jitter is drawn here, where
            // the seeded RNG lives.
            let delay = match self.inner.latencies.table.settle(&d) {
                f if f.jitter_ms > 0 => self.inner.latencies.draw(f),
                _ => delay,
            };
            self.schedule(delay, d);
        }
        if save {
            if let Err(e) = self.save() {
                tracing::error!(error = %e, "saving emulator state");
            }
        }
        r
    }

    fn schedule(&self, delay: Duration, d: Deferred) {
        let sim = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            sim.with_state(true, |st| {
                if let Some(ev) = st.settle(&d) {
                    st.events.push(ev);
                }
            });
        });
    }

    /// The latency profile in effect.
    pub fn profile(&self) -> Profile {
        self.inner.latencies.profile
    }

    /// The last API requests (oldest first), at most [`REQUEST_LOG_CAP`].
    pub fn requests(&self) -> Vec<RequestRecord> {
        let log = self.inner.requests.lock().expect("request log lock");
        log.recent.iter().cloned().collect()
    }

    /// API requests by action since the start.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        let log = self.inner.requests.lock().expect("request log lock");
        log.counts.clone()
    }

    fn record(&self, p: &Params, status: u16) {
        let Some(action) = p.get("Action") else {
            return;
        };
        let rec = RequestRecord {
            action: action.to_string(),
            params: p
                .0
                .iter()
                .filter(|(k, _)| !SIGNATURE_PARAMS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            status,
        };
        let mut log = self.inner.requests.lock().expect("request log lock");
        *log.counts.entry(rec.action.clone()).or_default() += 1;
        if log.recent.len() == REQUEST_LOG_CAP {
            log.recent.pop_front();
        }
        log.recent.push_back(rec);
    }

    pub fn add_instance(&self, spec: &InstanceSpec) -> Result<(), ApiError> {
        self.with_state(true, |st| st.add_instance(spec))
    }

    pub fn save(&self) -> Result<(), SimError> {
        match &self.inner.state_file {
            Some(p) => persist::save(&self.inner.state.lock().expect("state lock"), p),
            None => Ok(()),
        }
    }

    /// Serves on `listener` until `shutdown` turns true.
    pub async fn serve(&self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accepting a connection");
                            continue;
                        }
                    };
                    let sim = self.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let sim = sim.clone();
                            async move { Ok::<_, std::convert::Infallible>(sim.handle(req, peer).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        }
    }

    /// Binds `addr` (port 0 for an ephemeral one) and serves in the background.
    pub async fn start(&self, addr: SocketAddr) -> Result<RunningSim, SimError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| SimError::Listen {
            addr: addr.to_string(),
            source,
        })?;
        let (tx, rx) = watch::channel(false);
        let sim = self.clone();
        let task = tokio::spawn(async move { sim.serve(listener, rx).await });
        Ok(RunningSim {
            addr: local,
            sim: self.clone(),
            stop: tx,
            task,
        })
    }

    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let headers = req.headers().clone();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        if path.starts_with("/_sim/") {
            return self.admin(&method, &path, &body);
        }
        if metadata::split_path(&path).is_some() {
            let st = self.inner.state.lock().expect("state lock");
            let r = metadata::handle(
                &st,
                &self.inner.tokens,
                &method,
                &path,
                |h| {
                    headers
                        .get(h)
                        .and_then(|v| v.to_str().ok())
                        .map(String::from)
                },
                peer.ip(),
            );
            return text(r.status, r.body);
        }
        if path != "/" {
            return text(404, "not found: the API is served at /".to_string());
        }
        let query_params: std::collections::BTreeMap<String, String> =
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
        let mut params = Params(query_params.clone());
        if method == "POST" {
            params.0.extend(form_urlencoded::parse(&body).into_owned());
        }
        let header = |h: &str| {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let authorization = header("authorization");
        // V3 names the action and version in headers rather than parameters.
        if authorization.is_some() {
            for (h, k) in [("x-acs-action", "Action"), ("x-acs-version", "Version")] {
                if let Some(v) = header(h) {
                    params.0.entry(k.to_string()).or_insert(v);
                }
            }
        }
        let v3 = authorization.map(|a| {
            (
                a,
                auth::V3Request {
                    path: &path,
                    query: &query_params,
                    header: &header,
                    body: &body,
                },
            )
        });
        let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
        let answer = self.api(&method, &params, v3.as_ref()).await;
        // Refused signatures are not requests the cloud served; everything else is logged.
        if !matches!(&answer, Err(e) if is_auth_refusal(&e.code)) {
            self.record(&params, answer.as_ref().map_or_else(|e| e.status, |_| 200));
        }
        match answer {
            Ok(mut v) => {
                v["RequestId"] = json!(request_id);
                json_response(200, &v)
            }
            Err(e) => {
                tracing::debug!(code = %e.code, action = params.get("Action").unwrap_or(""), "API error");
                json_response(
                    e.status,
                    &json!({
                        "RequestId": request_id,
                        "HostId": "unicni-cloud-sim",
                        "Code": e.code,
                        "Message": e.message,
                        "Recommend": "see docs/cloud.md",
                    }),
                )
            }
        }
    }

    async fn api(
        &self,
        method: &str,
        p: &Params,
        v3: Option<&(String, auth::V3Request<'_>)>,
    ) -> Result<serde_json::Value, ApiError> {
        if method != "GET" && method != "POST" {
            return Err(ApiError::new(
                405,
                "UnsupportedHTTPMethod",
                format!("HTTP method {method} is not supported."),
            ));
        }
        {
            let st = self.inner.state.lock().expect("state lock");
            let keys = &self.inner.config.credentials;
            let skew = Duration::from_secs(self.inner.config.max_clock_skew_secs);
            match v3 {
                Some((authorization, r)) => auth::verify_v3(
                    method,
                    authorization,
                    r,
                    keys,
                    &st,
                    &self.inner.nonces,
                    skew,
                )?,
                None => auth::verify(method, p, keys, &st, &self.inner.nonces, skew)?,
            }
        }
        let action = p.req("Action")?.to_string();
        let (fault_latency, fault) = self.inner.faults.decide(&action);
        let latency = fault_latency + self.inner.latencies.action(&action);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if let Some(e) = fault {
            return Err(e);
        }
        self.with_state(api::mutates(&action), |st| api::dispatch(st, p))
    }

    fn admin(&self, method: &str, path: &str, body: &[u8]) -> Response<Full<Bytes>> {
        match (method, path) {
            ("GET", "/_sim/health") => text(200, "ok".into()),
            ("GET", "/_sim/requests") => json_response(
                200,
                &json!({
                    "profile": self.profile().as_str(),
                    "counts": self.request_counts(),
                }),
            ),
            ("GET", "/_sim/state") => json_response(
                200,
                &serde_json::to_value(self.snapshot()).expect("state serializes"),
            ),
            ("POST", "/_sim/instances") => match serde_json::from_slice::<InstanceSpec>(body) {
                Ok(spec) => match self.add_instance(&spec) {
                    Ok(()) => json_response(200, &json!({"InstanceId": spec.id})),
                    Err(e) => {
                        json_response(e.status, &json!({"Code": e.code, "Message": e.message}))
                    }
                },
                Err(e) => text(400, format!("body is not an instance spec: {e}")),
            },
            ("POST", "/_sim/faults") => match serde_json::from_slice::<FaultConfig>(body) {
                Ok(f) => match self.set_faults(f) {
                    Ok(()) => text(200, "ok".into()),
                    Err(e) => text(400, e.to_string()),
                },
                Err(e) => text(400, format!("body is not a fault config: {e}")),
            },
            _ => text(404, "unknown admin path".into()),
        }
    }
}

fn is_auth_refusal(code: &str) -> bool {
    matches!(
        code,
        "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "InvalidAccessKeyId.NotFound"
            | "InvalidTimeStamp.Expired"
            | "SignatureNonceUsed"
    ) || code.starts_with("InvalidSecurityToken")
}

fn text(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

fn json_response(status: u16, v: &serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json;charset=utf-8")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("valid response")
}

/// A started emulator; dropping it leaves it running until the runtime ends, `stop`
/// ends it.
pub struct RunningSim {
    pub addr: SocketAddr,
    pub sim: CloudSim,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSim {
    /// The API endpoint (`cloud.endpoint`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The metadata endpoint showing `instance_id`'s view (`cloud.metadata_endpoint`).
    pub fn metadata_endpoint(&self, instance_id: &str) -> String {
        format!("http://{}/instances/{instance_id}", self.addr)
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

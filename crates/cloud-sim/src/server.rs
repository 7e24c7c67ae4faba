//! The emulator as a value the lab embeds (`CloudSim`), and its HTTP front (hyper):
//! `/` is the RPC API, `/latest/...` and `/instances/<id>/latest/...` the metadata
//! service, `/_sim/...` a small admin API for the lab.

use crate::api;
use crate::auth::{self, NonceCache};
use crate::config::{InstanceSpec, SimConfig};
use crate::error::{ApiError, SimError};
use crate::events::SimEvent;
use crate::faults::{FaultConfig, Faults};
use crate::metadata::{self, Tokens};
use crate::params::Params;
use crate::persist;
use crate::state::{Deferred, Settings, State};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
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
}

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
                config,
                state_file,
                nonces: NonceCache::default(),
                tokens: Tokens::default(),
                events,
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
        match self.api(&method, &params, v3.as_ref()).await {
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
        let (latency, fault) = self.inner.faults.decide(&action);
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

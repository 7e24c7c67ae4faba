//! The agent's HTTP endpoint: `/healthz`, `/readyz` (with the reason when not ready) and
//! `/metrics` (the one registry, OpenMetrics text).

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use prometheus_client::registry::Registry;
use std::sync::{Arc, RwLock};
use unicni_core::{NodeAgent, Readiness};

/// The content type of the OpenMetrics text format that prometheus-client encodes.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PLAIN: &str = "text/plain; charset=utf-8";

/// What the endpoint shows: the node agent's readiness and the registry.
#[derive(Clone)]
pub struct Endpoint {
    pub node: Arc<dyn NodeAgent>,
    pub registry: Arc<RwLock<Registry>>,
}

/// Status code, content type and body for a request path.
pub fn answer(e: &Endpoint, path: &str) -> (u16, &'static str, String) {
    match path {
        "/healthz" => (200, PLAIN, "ok\n".into()),
        "/readyz" => match e.node.readiness() {
            Readiness::Ready(detail) => (200, PLAIN, format!("ready: {detail}\n")),
            Readiness::NotReady(why) => (503, PLAIN, format!("not ready: {why}\n")),
        },
        "/metrics" => {
            let mut body = String::new();
            let registry = e.registry.read().unwrap_or_else(|p| p.into_inner());
            match prometheus_client::encoding::text::encode(&mut body, &registry) {
                Ok(()) => (200, OPENMETRICS, body),
                Err(_) => (500, PLAIN, "encoding the metrics failed\n".into()),
            }
        }
        _ => (
            404,
            PLAIN,
            "not found; try /healthz, /readyz or /metrics\n".into(),
        ),
    }
}

/// Serves `endpoint` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, endpoint: Endpoint) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (code, kind, body) = answer(&endpoint, req.uri().path());
                async move {
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .status(code)
                            .header("content-type", kind)
                            .body(Full::new(Bytes::from(body)))
                            .expect("static response"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(conn), svc)
                .await;
        });
    }
}

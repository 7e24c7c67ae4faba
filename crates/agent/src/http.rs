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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use unicni_core::{NodeCapacity, NodeContext};

    struct Fake(Mutex<Readiness>);

    #[async_trait::async_trait]
    impl NodeAgent for Fake {
        fn describe(&self) -> String {
            "fake".into()
        }
        fn is_pod_link(&self) -> fn(&str) -> bool {
            |_| false
        }
        fn register_metrics(&self, _: &mut Registry) {}
        async fn run(&self, _: NodeContext) -> unicni_core::Result<()> {
            Ok(())
        }
        fn readiness(&self) -> Readiness {
            self.0.lock().unwrap().clone()
        }
        fn capacity(&self) -> Option<NodeCapacity> {
            None
        }
    }

    #[test]
    fn readyz_gives_the_reason_and_metrics_are_openmetrics() {
        let fake = Arc::new(Fake(Mutex::new(Readiness::NotReady(
            "no subnet lease published yet".into(),
        ))));
        let mut registry = Registry::default();
        crate::register_node(&mut registry, fake.clone());
        let e = Endpoint {
            node: fake.clone(),
            registry: Arc::new(RwLock::new(registry)),
        };
        assert_eq!(
            answer(&e, "/readyz"),
            (
                503,
                PLAIN,
                "not ready: no subnet lease published yet\n".into()
            )
        );
        let (code, kind, body) = answer(&e, "/metrics");
        assert_eq!((code, kind), (200, OPENMETRICS));
        assert!(body.contains("unicni_agent_ready 0\n"), "{body}");
        assert!(body.contains("unicni_agent_pod_capacity 0\n"), "{body}");
        assert_eq!(body.matches("# EOF").count(), 1, "{body}");
        *fake.0.lock().unwrap() = Readiness::Ready("subnet 10.0.1.0/24".into());
        assert_eq!(
            answer(&e, "/readyz"),
            (200, PLAIN, "ready: subnet 10.0.1.0/24\n".into())
        );
        assert!(answer(&e, "/metrics").2.contains("unicni_agent_ready 1\n"));
        assert_eq!(answer(&e, "/nope").0, 404);
    }
}

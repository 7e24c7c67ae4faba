//! The agent's plain-text HTTP endpoint (`/healthz`, `/readyz`, `/metrics`): one small
//! server both backends' agents share; each supplies the answer for a path.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use std::sync::Arc;

/// Status code and body for a request path.
pub type Answer = (u16, String);

/// Serves `answer` on `listener` until the process ends.
pub async fn serve<F>(listener: tokio::net::TcpListener, answer: F)
where
    F: Fn(&str) -> Answer + Send + Sync + 'static,
{
    let answer = Arc::new(answer);
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (code, body) = answer(req.uri().path());
                async move { Ok::<_, std::convert::Infallible>(text(code, body)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(conn), svc)
                .await;
        });
    }
}

fn text(code: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain; version=0.0.4")
        .body(Full::new(Bytes::from(body)))
        .expect("static response")
}

/// What every agent answers for an unknown path.
pub fn not_found() -> Answer {
    (
        404,
        "not found; try /healthz, /readyz or /metrics\n".to_string(),
    )
}

/// `body` (an OpenMetrics text ending in `# EOF`) with `more` metric families inserted
/// before its end: the policy engine's families join either backend's.
pub fn with_families(mut body: String, more: &str) -> String {
    if more.is_empty() {
        return body;
    }
    let end = body.rfind("# EOF\n").unwrap_or(body.len());
    body.insert_str(end, more);
    body
}

#[cfg(test)]
mod tests {
    #[test]
    fn families_go_before_eof() {
        let body = "# TYPE a gauge\na 1\n# EOF\n".to_string();
        assert_eq!(
            super::with_families(body.clone(), "b 2\n"),
            "# TYPE a gauge\na 1\nb 2\n# EOF\n"
        );
        assert_eq!(super::with_families(body.clone(), ""), body);
    }
}

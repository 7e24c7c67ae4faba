//! The production `Cloud`: Alibaba Cloud's RPC-style OpenAPI (ECS 2014-05-26, VPC
//! 2016-04-28) over HTTPS, signed with V3 (`ACS3-HMAC-SHA256`, the vendor's current
//! default) or, with `cloud.signature_version = "v2"`, the legacy V2 (HMAC-SHA1,
//! SignatureVersion 1.0); see `signer`. Only the endpoint differs between the real cloud
//! and the emulator.

use crate::credentials::{CredentialProvider, Credentials};
use crate::error::{ApiFailure, CloudError, Result};
use crate::rate::{RateLimiter, RateLimits};
use crate::signer;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
pub use unicni_config::SignatureVersion;

pub const ECS_VERSION: &str = "2014-05-26";
pub const VPC_VERSION: &str = "2016-04-28";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ecs,
    Vpc,
}

impl Service {
    pub fn version(self) -> &'static str {
        match self {
            Service::Ecs => ECS_VERSION,
            Service::Vpc => VPC_VERSION,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with "equal jitter": half fixed, half random, so concurrent
    /// nodes that were throttled together do not come back together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let half = exp / 2;
        let jitter = half.mul_f64(f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 255.0);
        half + jitter
    }
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub region: String,
    pub ecs_endpoint: String,
    pub vpc_endpoint: String,
    pub retry: RetryPolicy,
    pub rate_limits: RateLimits,
    pub request_timeout: Duration,
    /// Page size for the paginated Describe calls (the APIs cap it at 50 or 100).
    pub page_size: u32,
    pub signature_version: SignatureVersion,
}

impl ClientOptions {
    /// The regional public endpoints, or one override for both (the emulator serves ECS
    /// and VPC on one address and tells them apart by `Version`).
    pub fn for_region(region: &str, endpoint: Option<&str>) -> Self {
        let (ecs, vpc) = match endpoint {
            Some(e) => (e.to_string(), e.to_string()),
            None => (
                format!("https://ecs.{region}.aliyuncs.com"),
                format!("https://vpc.{region}.aliyuncs.com"),
            ),
        };
        Self {
            region: region.to_string(),
            ecs_endpoint: ecs.trim_end_matches('/').to_string(),
            vpc_endpoint: vpc.trim_end_matches('/').to_string(),
            retry: RetryPolicy::default(),
            rate_limits: RateLimits::default(),
            request_timeout: Duration::from_secs(20),
            page_size: 50,
            signature_version: SignatureVersion::default(),
        }
    }
}

#[derive(Debug)]
pub struct AlibabaCloud {
    pub(crate) opts: ClientOptions,
    http: reqwest::Client,
    creds: Arc<dyn CredentialProvider>,
    limiter: RateLimiter,
}

/// Request parameters in the API's flat `Name.N.Field` form.
pub(crate) type Params = Vec<(String, String)>;

impl AlibabaCloud {
    pub fn new(opts: ClientOptions, creds: Arc<dyn CredentialProvider>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(opts.request_timeout)
            .build()
            .map_err(|e| CloudError::Transport {
                action: "init".into(),
                endpoint: opts.ecs_endpoint.clone(),
                reason: e.to_string(),
            })?;
        let limiter = RateLimiter::new(opts.rate_limits.clone());
        Ok(Self {
            opts,
            http,
            creds,
            limiter,
        })
    }

    pub fn region(&self) -> &str {
        &self.opts.region
    }

    fn endpoint(&self, service: Service) -> &str {
        match service {
            Service::Ecs => &self.opts.ecs_endpoint,
            Service::Vpc => &self.opts.vpc_endpoint,
        }
    }

    /// The signed query string of one attempt: fresh nonce and timestamp every time, the
    /// caller's params (and so its ClientToken) unchanged across attempts.
    fn signed_query(
        &self,
        service: Service,
        action: &str,
        params: &Params,
        creds: &Credentials,
    ) -> String {
        let mut all: BTreeMap<String, String> = params.iter().cloned().collect();
        let common = [
            ("Action", action.to_string()),
            ("Version", service.version().to_string()),
            ("Format", "JSON".to_string()),
            ("AccessKeyId", creds.access_key_id.clone()),
            ("SignatureMethod", signer::SIGNATURE_METHOD.to_string()),
            ("SignatureVersion", signer::SIGNATURE_VERSION.to_string()),
            ("SignatureNonce", uuid::Uuid::new_v4().to_string()),
            (
                "Timestamp",
                humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            ),
        ];
        for (k, v) in common {
            all.insert(k.to_string(), v);
        }
        all.entry("RegionId".into())
            .or_insert_with(|| self.opts.region.clone());
        if let Some(tok) = &creds.security_token {
            all.insert("SecurityToken".into(), tok.expose().to_string());
        }
        let sig = signer::sign_params("GET", &all, creds.access_key_secret.expose());
        format!(
            "{}&Signature={}",
            signer::canonical_query(&all),
            signer::percent_encode(&sig)
        )
    }

    /// A V3 request of one attempt: the parameters in the query of a `POST /` with an
    /// empty body (as the vendor's SDKs send RPC calls), action, version, time, nonce and
    /// token in `x-acs-*` headers, and the `Authorization` header over them.
    fn v3_request(
        &self,
        endpoint: &str,
        service: Service,
        action: &str,
        params: &Params,
        creds: &Credentials,
    ) -> std::result::Result<reqwest::RequestBuilder, String> {
        let mut query: BTreeMap<String, String> = params.iter().cloned().collect();
        query
            .entry("RegionId".into())
            .or_insert_with(|| self.opts.region.clone());
        let url = reqwest::Url::parse(&format!("{endpoint}/?{}", signer::canonical_query(&query)))
            .map_err(|e| format!("endpoint is not a URL: {e}"))?;
        // The Host header as the HTTP stack sends it: the port only when not the default.
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err("endpoint has no host".into()),
        };
        let payload_hash = signer::sha256_hex(b"");
        let mut headers: BTreeMap<String, String> = [
            ("host", host),
            ("x-acs-action", action.to_string()),
            ("x-acs-version", service.version().to_string()),
            (
                "x-acs-date",
                humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            ),
            ("x-acs-signature-nonce", uuid::Uuid::new_v4().to_string()),
            ("x-acs-content-sha256", payload_hash.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(tok) = &creds.security_token {
            headers.insert("x-acs-security-token".into(), tok.expose().to_string());
        }
        let canonical = signer::v3_canonical_request("POST", "/", &query, &headers, &payload_hash);
        let sig = signer::v3_sign(
            creds.access_key_secret.expose(),
            &signer::v3_string_to_sign(&canonical),
        );
        let authorization = signer::v3_authorization(&creds.access_key_id, &headers, &sig);
        let mut req = self.http.post(url).header("authorization", authorization);
        for (k, v) in headers.into_iter().filter(|(k, _)| k != "host") {
            req = req.header(k, v);
        }
        Ok(req)
    }

    /// One API call with rate limiting and retries; returns the response document.
    pub(crate) async fn call(
        &self,
        service: Service,
        action: &str,
        params: Params,
    ) -> Result<Value> {
        let endpoint = self.endpoint(service).to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.limiter.acquire(action).await;
            let result = self.call_once(service, action, &params, &endpoint).await;
            match result {
                Err(e) if e.is_retryable() && attempt < self.opts.retry.max_attempts => {
                    let delay = self.opts.retry.delay(attempt - 1);
                    tracing::debug!(action, attempt, ?delay, error = %e, "retrying cloud API call");
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    async fn call_once(
        &self,
        service: Service,
        action: &str,
        params: &Params,
        endpoint: &str,
    ) -> Result<Value> {
        let creds = self.creds.credentials().await?;
        let transport = |reason: String| CloudError::Transport {
            action: action.to_string(),
            endpoint: endpoint.to_string(),
            reason,
        };
        let request = match self.opts.signature_version {
            SignatureVersion::V3 => self
                .v3_request(endpoint, service, action, params, &creds)
                .map_err(transport)?,
            SignatureVersion::V2 => self.http.get(format!(
                "{endpoint}/?{}",
                self.signed_query(service, action, params, &creds)
            )),
        };
        // Errors from reqwest embed the URL, which (V2) carries the signature and any STS
        // token: strip it before the error can reach a log.
        let resp = request
            .send()
            .await
            .map_err(|e| transport(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| transport(e.without_url().to_string()))?;
        let doc: Value = serde_json::from_str(&body).map_err(|e| CloudError::Decode {
            action: action.to_string(),
            reason: format!("HTTP {status}, body is not JSON: {e}"),
        })?;
        if (200..300).contains(&status) {
            return Ok(doc);
        }
        let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Err(CloudError::from_api(ApiFailure {
            action: action.to_string(),
            code: if s("Code").is_empty() {
                format!("HTTP{status}")
            } else {
                s("Code")
            },
            message: s("Message"),
            request_id: s("RequestId"),
            http_status: status,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for _ in 0..20 {
            let d0 = p.delay(0);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d3 = p.delay(3);
            assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800));
            assert!(p.delay(30) <= Duration::from_millis(1000));
        }
    }
}

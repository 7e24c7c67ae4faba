//! Client of the instance metadata service (IMDSv2 style: `PUT /latest/api/token`
//! first, then GETs carrying the token). The endpoint is configurable so the lab can
//! point each node at its own view in the emulator (`.../instances/<id>`).

use crate::error::{CloudError, Result};
use crate::secret::Secret;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

pub const DEFAULT_ENDPOINT: &str = "http://100.100.100.200";
pub const TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";
pub const TOKEN_TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
const TOKEN_TTL: Duration = Duration::from_secs(21600);

/// What the metadata service says about one ENI of this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniMetadata {
    pub mac: String,
    pub eni_id: String,
    pub primary_ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub private_ipv4s: Vec<Ipv4Addr>,
    pub ipv6s: Vec<Ipv6Addr>,
    /// Delegated prefixes (`ipv4-prefixes`, `ipv6-prefixes`; absent without any).
    pub ipv4_prefixes: Vec<ipnet::Ipv4Net>,
    pub ipv6_prefixes: Vec<ipnet::Ipv6Net>,
    pub vswitch_cidr: String,
    pub vswitch_id: String,
}

#[derive(Debug)]
pub struct MetadataClient {
    http: reqwest::Client,
    endpoint: String,
    token: Mutex<Option<(Secret, Instant)>>,
}

impl MetadataClient {
    pub fn new(endpoint: Option<&str>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .map_err(|e| CloudError::Metadata(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            http,
            endpoint: endpoint
                .unwrap_or(DEFAULT_ENDPOINT)
                .trim_end_matches('/')
                .to_string(),
            token: Mutex::new(None),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn token(&self, force: bool) -> Result<Secret> {
        let mut guard = self.token.lock().await;
        if let Some((tok, exp)) = guard.as_ref() {
            if !force && Instant::now() < *exp {
                return Ok(tok.clone());
            }
        }
        let url = format!("{}/latest/api/token", self.endpoint);
        let resp = self
            .http
            .put(&url)
            .header(TOKEN_TTL_HEADER, TOKEN_TTL.as_secs().to_string())
            .send()
            .await
            .map_err(|e| CloudError::Metadata(format!("PUT {url}: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(CloudError::Metadata(format!("PUT {url}: HTTP {status}")));
        }
        let tok = Secret::new(
            resp.text()
                .await
                .map_err(|e| CloudError::Metadata(format!("PUT {url}: {e}")))?,
        );
        // Refresh a minute early so a token never expires between fetch and use.
        *guard = Some((
            tok.clone(),
            Instant::now() + TOKEN_TTL - Duration::from_secs(60),
        ));
        Ok(tok)
    }

    /// GET `/latest/<path>` with the session token; a rejected token is renewed once.
    pub async fn get(&self, path: &str) -> Result<String> {
        let url = format!("{}/latest/{}", self.endpoint, path.trim_start_matches('/'));
        for attempt in 0..2 {
            let tok = self.token(attempt > 0).await?;
            let resp = self
                .http
                .get(&url)
                .header(TOKEN_HEADER, tok.expose())
                .send()
                .await
                .map_err(|e| CloudError::Metadata(format!("GET {url}: {e}")))?;
            let status = resp.status();
            if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN
            {
                continue;
            }
            if !status.is_success() {
                return Err(CloudError::Metadata(format!(
                    "GET {url}: HTTP {status}: is this path served for this instance?"
                )));
            }
            return resp
                .text()
                .await
                .map(|s| s.trim().to_string())
                .map_err(|e| CloudError::Metadata(format!("GET {url}: {e}")));
        }
        Err(CloudError::Metadata(format!(
            "GET {url}: the session token was refused twice"
        )))
    }

    pub async fn instance_id(&self) -> Result<String> {
        self.get("meta-data/instance-id").await
    }
    pub async fn region_id(&self) -> Result<String> {
        self.get("meta-data/region-id").await
    }
    pub async fn zone_id(&self) -> Result<String> {
        self.get("meta-data/zone-id").await
    }
    pub async fn vpc_id(&self) -> Result<String> {
        self.get("meta-data/vpc-id").await
    }
    pub async fn vswitch_id(&self) -> Result<String> {
        self.get("meta-data/vswitch-id").await
    }
    pub async fn instance_type(&self) -> Result<String> {
        self.get("meta-data/instance/instance-type").await
    }
    /// The primary ENI's MAC.
    pub async fn mac(&self) -> Result<String> {
        self.get("meta-data/mac").await
    }

    /// MACs of every ENI attached to this instance.
    pub async fn macs(&self) -> Result<Vec<String>> {
        let body = self.get("meta-data/network/interfaces/macs/").await?;
        Ok(body
            .lines()
            .map(|l| l.trim().trim_end_matches('/').to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }

    async fn eni_field(&self, mac: &str, field: &str) -> Result<String> {
        self.get(&format!("meta-data/network/interfaces/macs/{mac}/{field}"))
            .await
    }

    pub async fn eni(&self, mac: &str) -> Result<EniMetadata> {
        let parse4 = |what: &str, s: String| -> Result<Ipv4Addr> {
            s.parse().map_err(|_| {
                CloudError::Metadata(format!("ENI {mac}: {what} {s:?} is not an IPv4 address"))
            })
        };
        let eni_id = self.eni_field(mac, "network-interface-id").await?;
        let primary_ip = parse4(
            "primary-ip-address",
            self.eni_field(mac, "primary-ip-address").await?,
        )?;
        let gateway = parse4("gateway", self.eni_field(mac, "gateway").await?)?;
        let private_ipv4s = parse_list(&self.eni_field(mac, "private-ipv4s").await?)
            .into_iter()
            .map(|s| parse4("private-ipv4s entry", s))
            .collect::<Result<Vec<_>>>()?;
        // An ENI without IPv6 answers 404 for ipv6s on the real service.
        let ipv6s = match self.eni_field(mac, "ipv6s").await {
            Ok(body) => parse_list(&body)
                .into_iter()
                .map(|s| {
                    s.parse().map_err(|_| {
                        CloudError::Metadata(format!(
                            "ENI {mac}: ipv6s entry {s:?} is not an IPv6 address"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            Err(_) => Vec::new(),
        };
        // Like ipv6s, a path the service only has when the ENI holds prefixes.
        let prefixes = |body: Result<String>| -> Vec<String> {
            body.map(|b| parse_list(&b)).unwrap_or_default()
        };
        let ipv4_prefixes = prefixes(self.eni_field(mac, "ipv4-prefixes").await)
            .into_iter()
            .map(|s| {
                s.parse().map_err(|_| {
                    CloudError::Metadata(format!(
                        "ENI {mac}: ipv4-prefixes entry {s:?} is not an IPv4 prefix"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ipv6_prefixes = prefixes(self.eni_field(mac, "ipv6-prefixes").await)
            .into_iter()
            .map(|s| {
                s.parse().map_err(|_| {
                    CloudError::Metadata(format!(
                        "ENI {mac}: ipv6-prefixes entry {s:?} is not an IPv6 prefix"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(EniMetadata {
            ipv4_prefixes,
            ipv6_prefixes,
            mac: mac.to_string(),
            eni_id,
            primary_ip,
            gateway,
            private_ipv4s,
            ipv6s,
            vswitch_cidr: self.eni_field(mac, "vswitch-cidr-block").await?,
            vswitch_id: self.eni_field(mac, "vswitch-id").await?,
        })
    }

    /// Name of the RAM role attached to this instance.
    pub async fn ram_role(&self) -> Result<String> {
        let body = self.get("meta-data/ram/security-credentials/").await?;
        body.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(|s| s.trim_end_matches('/').to_string())
            .ok_or_else(|| CloudError::Metadata("no RAM role is attached to this instance".into()))
    }
}

/// The service lists addresses as `["a","b"]` for IPv4 and `[a,b]` for IPv6; accept both,
/// and newline-separated lists too.
fn parse_list(body: &str) -> Vec<String> {
    body.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split([',', '\n'])
        .map(|s| s.trim().trim_matches('"').trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_list;

    #[test]
    fn parses_vendor_list_formats() {
        assert_eq!(
            parse_list(r#"["10.0.0.2","10.0.0.3"]"#),
            vec!["10.0.0.2", "10.0.0.3"]
        );
        assert_eq!(parse_list("[2408::1, 2408::2]"), vec!["2408::1", "2408::2"]);
        assert_eq!(parse_list("[]"), Vec::<String>::new());
    }
}

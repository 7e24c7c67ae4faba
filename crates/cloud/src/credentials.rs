//! Where the access key comes from: a pair in the config, a credentials file (which may
//! carry an STS token and is re-read so a rotating sidecar can refresh it), or the
//! instance's RAM role from the metadata service. `CredentialChain` tries them in order.

use crate::error::{CloudError, Result};
use crate::metadata::MetadataClient;
use crate::secret::Secret;
use async_trait::async_trait;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    /// Present for STS credentials (RAM role, token file); sent as `SecurityToken`.
    pub security_token: Option<Secret>,
    pub expiration: Option<SystemTime>,
}

impl Credentials {
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            access_key_id: id.into(),
            access_key_secret: Secret::new(secret),
            security_token: None,
            expiration: None,
        }
    }

    fn expires_within(&self, d: Duration) -> bool {
        self.expiration
            .map(|e| e <= SystemTime::now() + d)
            .unwrap_or(false)
    }
}

#[async_trait]
pub trait CredentialProvider: Send + Sync + std::fmt::Debug {
    async fn credentials(&self) -> Result<Credentials>;
}

#[derive(Debug)]
pub struct StaticProvider(pub Credentials);

#[async_trait]
impl CredentialProvider for StaticProvider {
    async fn credentials(&self) -> Result<Credentials> {
        Ok(self.0.clone())
    }
}

/// The file's keys; the snake_case names, the names STS itself returns and the dotted
/// names of ACK's token file are all accepted.
#[derive(Deserialize)]
struct FileCreds {
    #[serde(alias = "AccessKeyId", alias = "access.key.id")]
    access_key_id: String,
    #[serde(alias = "AccessKeySecret", alias = "access.key.secret")]
    access_key_secret: String,
    #[serde(default, alias = "SecurityToken", alias = "security.token")]
    security_token: Option<String>,
    #[serde(default, alias = "Expiration", alias = "expiration")]
    expiration: Option<String>,
}

/// A JSON (or `key = "value"` TOML) file with an access key pair and optionally an STS
/// token; read on every call so rotation needs no restart.
#[derive(Debug)]
pub struct FileProvider {
    pub path: PathBuf,
}

#[async_trait]
impl CredentialProvider for FileProvider {
    async fn credentials(&self) -> Result<Credentials> {
        let p = self.path.display();
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| CloudError::Credentials(format!("reading credentials file {p}: {e}")))?;
        // Parse errors from serde may quote the input: never include them, name the file.
        let parsed: FileCreds = serde_json::from_str(&text)
            .ok()
            .or_else(|| toml::from_str(&text).ok())
            .ok_or_else(|| {
                CloudError::Credentials(format!(
                    "credentials file {p} is neither JSON nor TOML with access_key_id and access_key_secret"
                ))
            })?;
        let expiration = match parsed.expiration.as_deref() {
            None | Some("") => None,
            Some(s) => Some(humantime::parse_rfc3339_weak(s).map_err(|_| {
                CloudError::Credentials(format!(
                    "credentials file {p}: expiration {s:?} is not RFC 3339"
                ))
            })?),
        };
        let creds = Credentials {
            access_key_id: parsed.access_key_id,
            access_key_secret: Secret::new(parsed.access_key_secret),
            security_token: parsed
                .security_token
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            expiration,
        };
        if creds.expires_within(Duration::ZERO) {
            return Err(CloudError::Credentials(format!(
                "the STS token in {p} has expired: refresh the file"
            )));
        }
        Ok(creds)
    }
}

#[derive(Deserialize)]
struct RoleCreds {
    #[serde(rename = "Code", default)]
    code: String,
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
    #[serde(rename = "AccessKeySecret")]
    access_key_secret: String,
    #[serde(rename = "SecurityToken")]
    security_token: String,
    #[serde(rename = "Expiration")]
    expiration: String,
}

/// STS credentials of the instance's RAM role, cached until five minutes before expiry.
#[derive(Debug)]
pub struct RamRoleProvider {
    metadata: Arc<MetadataClient>,
    role: Option<String>,
    cache: Mutex<Option<Credentials>>,
}

impl RamRoleProvider {
    pub fn new(metadata: Arc<MetadataClient>, role: Option<String>) -> Self {
        Self {
            metadata,
            role,
            cache: Mutex::new(None),
        }
    }
}

#[async_trait]
impl CredentialProvider for RamRoleProvider {
    async fn credentials(&self) -> Result<Credentials> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if !c.expires_within(Duration::from_secs(300)) {
                return Ok(c.clone());
            }
        }
        let role = match &self.role {
            Some(r) => r.clone(),
            None => self.metadata.ram_role().await?,
        };
        let body = self
            .metadata
            .get(&format!("meta-data/ram/security-credentials/{role}"))
            .await?;
        let rc: RoleCreds = serde_json::from_str(&body).map_err(|_| {
            CloudError::Credentials(format!(
                "RAM role {role}: the metadata service answered with a malformed document"
            ))
        })?;
        if !rc.code.is_empty() && rc.code != "Success" {
            return Err(CloudError::Credentials(format!(
                "RAM role {role}: the metadata service answered Code {}",
                rc.code
            )));
        }
        let expiration = humantime::parse_rfc3339_weak(&rc.expiration).map_err(|_| {
            CloudError::Credentials(format!(
                "RAM role {role}: Expiration {:?} is not RFC 3339",
                rc.expiration
            ))
        })?;
        let c = Credentials {
            access_key_id: rc.access_key_id,
            access_key_secret: Secret::new(rc.access_key_secret),
            security_token: Some(Secret::new(rc.security_token)),
            expiration: Some(expiration),
        };
        *cache = Some(c.clone());
        Ok(c)
    }
}

/// Tries each provider in order; the first that yields credentials wins.
#[derive(Debug)]
pub struct CredentialChain(pub Vec<Box<dyn CredentialProvider>>);

#[async_trait]
impl CredentialProvider for CredentialChain {
    async fn credentials(&self) -> Result<Credentials> {
        let mut why = Vec::new();
        for p in &self.0 {
            match p.credentials().await {
                Ok(c) => return Ok(c),
                Err(e) => why.push(e.to_string()),
            }
        }
        Err(CloudError::Credentials(format!(
            "every source failed: {}; set cloud.access_key_id/access_key_secret, cloud.credentials_file, or attach a RAM role",
            if why.is_empty() { "no source configured".into() } else { why.join("; ") }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let mut c = Credentials::new("LTAIexampleid", "very-secret-value");
        c.security_token = Some(Secret::new("sts-token-value"));
        let shown = format!("{c:?} {:?}", StaticProvider(c.clone()));
        assert!(shown.contains("LTAIexampleid"));
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(!shown.contains("sts-token-value"), "{shown}");
    }

    #[tokio::test]
    async fn file_provider_reads_json_and_toml_and_hides_secret_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        std::fs::write(
            &p,
            r#"{"AccessKeyId":"id1","AccessKeySecret":"s3cr3t","SecurityToken":"tok","Expiration":"2999-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let c = FileProvider { path: p.clone() }
            .credentials()
            .await
            .unwrap();
        assert_eq!(c.access_key_id, "id1");
        assert_eq!(c.access_key_secret.expose(), "s3cr3t");
        assert_eq!(c.security_token.unwrap().expose(), "tok");

        std::fs::write(&p, "access_key_id = \"id2\"\naccess_key_secret = \"x\"\n").unwrap();
        let c = FileProvider { path: p.clone() }
            .credentials()
            .await
            .unwrap();
        assert_eq!(c.access_key_id, "id2");

        std::fs::write(&p, "access_key_id = \"id2\"\nsecret-ish = \"leakme\"\n").unwrap();
        let e = FileProvider { path: p.clone() }
            .credentials()
            .await
            .unwrap_err();
        assert!(!e.to_string().contains("leakme"), "{e}");

        std::fs::write(
            &p,
            r#"{"access_key_id":"a","access_key_secret":"b","security_token":"t","expiration":"2001-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let e = FileProvider { path: p }.credentials().await.unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }

    #[tokio::test]
    async fn chain_falls_through_to_next_source() {
        let chain = CredentialChain(vec![
            Box::new(FileProvider {
                path: "/nonexistent/creds".into(),
            }),
            Box::new(StaticProvider(Credentials::new("id", "sec"))),
        ]);
        assert_eq!(chain.credentials().await.unwrap().access_key_id, "id");
        let e = CredentialChain(vec![]).credentials().await.unwrap_err();
        assert!(e.to_string().contains("no source configured"));
    }
}

//! The `Cloud` interface of unicni and its Alibaba Cloud implementation.
//!
//! - [`Cloud`]: ENIs, private IPs, vSwitches, route tables, instance-type limits.
//! - [`AlibabaCloud`]: the OpenAPI client (ECS 2014-05-26, VPC 2016-04-28), signature
//!   method V2 (HMAC-SHA1, `SignatureVersion=1.0`), retries with backoff, per-action
//!   rate limits, pagination, typed errors. The emulator (`unicni-cloud-sim`) speaks
//!   the same wire protocol, so tests exercise this very code.
//! - [`MetadataClient`]: the instance metadata service (IMDSv2 token first).
//! - [`credentials`]: access key from config or file, STS token file, RAM role.

pub mod api;
pub mod client;
pub mod credentials;
pub mod error;
pub mod metadata;
mod ops;
pub mod poll;
pub mod rate;
pub mod secret;
pub mod signer;
pub mod types;
mod wire;

pub use api::Cloud;
pub use client::{AlibabaCloud, ClientOptions, RetryPolicy, Service, SignatureVersion};
pub use credentials::{CredentialChain, CredentialProvider, Credentials};
pub use error::{ApiFailure, CloudError, Result};
pub use metadata::{EniMetadata, MetadataClient};
pub use poll::PollPolicy;
pub use secret::Secret;
pub use types::*;

use std::sync::Arc;

/// Builds the production client from the `[cloud]` section of the config. The region
/// comes from the config or, failing that, from the metadata service.
pub async fn from_config(cfg: &unicni_config::CloudConfig) -> Result<AlibabaCloud> {
    let metadata = Arc::new(MetadataClient::new(cfg.metadata_endpoint.as_deref())?);
    let region = match &cfg.region {
        Some(r) => r.clone(),
        None => metadata.region_id().await.map_err(|e| {
            CloudError::Metadata(format!(
                "cloud.region is unset and the metadata service did not say: {e}"
            ))
        })?,
    };
    let mut chain: Vec<Box<dyn CredentialProvider>> = Vec::new();
    match (&cfg.access_key_id, &cfg.access_key_secret) {
        (Some(id), Some(secret)) => chain.push(Box::new(credentials::StaticProvider(
            Credentials::new(id.clone(), secret.clone()),
        ))),
        (None, None) => {}
        _ => {
            return Err(CloudError::Credentials(
                "cloud.access_key_id and cloud.access_key_secret must be set together".into(),
            ))
        }
    }
    if let Some(path) = &cfg.credentials_file {
        chain.push(Box::new(credentials::FileProvider { path: path.into() }));
    }
    chain.push(Box::new(credentials::RamRoleProvider::new(metadata, None)));
    let mut opts = ClientOptions::for_region(&region, cfg.endpoint.as_deref());
    opts.signature_version = cfg.signature_version;
    AlibabaCloud::new(opts, Arc::new(CredentialChain(chain)))
}

//! Verifying a request the way the vendor does: known access key, HMAC-SHA1 signature
//! V1.0 over the canonical query, fresh timestamp, unused nonce, matching STS token.

use crate::config::AccessKey;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::state::State;
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use unicni_cloud::signer;

/// Nonces remembered for replay detection (the oldest are forgotten first).
const NONCE_MEMORY: usize = 100_000;

#[derive(Debug, Default)]
pub struct NonceCache {
    inner: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl NonceCache {
    fn fresh(&self, nonce: &str) -> bool {
        let mut g = self.inner.lock().expect("nonce lock");
        if g.0.contains(nonce) {
            return false;
        }
        g.0.insert(nonce.to_string());
        g.1.push_back(nonce.to_string());
        if g.1.len() > NONCE_MEMORY {
            if let Some(old) = g.1.pop_front() {
                g.0.remove(&old);
            }
        }
        true
    }
}

pub fn verify(
    method: &str,
    p: &Params,
    keys: &[AccessKey],
    state: &State,
    nonces: &NonceCache,
    max_skew: Duration,
) -> ApiResult<()> {
    let key_id = p.req("AccessKeyId")?;
    let signature = p.get("Signature").ok_or_else(|| {
        ApiError::new(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards.",
        )
    })?;
    if p.get("SignatureMethod") != Some(signer::SIGNATURE_METHOD) {
        return Err(ApiError::new(
            400,
            "InvalidSignatureMethod",
            "Specified signature method is not valid.",
        ));
    }
    if p.get("SignatureVersion") != Some(signer::SIGNATURE_VERSION) {
        return Err(ApiError::new(
            400,
            "UnsupportedSignatureVersion",
            "Specified signature version is not supported.",
        ));
    }
    let (secret, token) = if let Some(k) = keys.iter().find(|k| k.access_key_id == key_id) {
        (k.access_key_secret.clone(), None)
    } else if let Some(sts) = state
        .instances
        .values()
        .filter_map(|i| i.sts.as_ref())
        .find(|s| s.access_key_id == key_id)
    {
        (
            sts.access_key_secret.clone(),
            Some(sts.security_token.clone()),
        )
    } else {
        return Err(ApiError::new(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        ));
    };
    let expected = signer::sign_params(method, &p.0, &secret);
    if !signer::signatures_equal(&expected, signature) {
        return Err(ApiError::new(
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        ));
    }
    if let Some(tok) = token {
        if p.get("SecurityToken") != Some(tok.as_str()) {
            return Err(ApiError::new(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "The SecurityToken does not belong to this access key.",
            ));
        }
    }
    let ts = p
        .get("Timestamp")
        .or_else(|| p.get("TimeStamp"))
        .ok_or_else(|| ApiError::missing("Timestamp"))?;
    let when = humantime::parse_rfc3339_weak(ts).map_err(|_| ApiError::invalid("Timestamp", ts))?;
    let now = SystemTime::now();
    let skew = now
        .duration_since(when)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or_default();
    if skew > max_skew {
        return Err(ApiError::new(
            400,
            "InvalidTimeStamp.Expired",
            format!("Specified time stamp {ts} is too far from the server's time."),
        ));
    }
    let nonce = p.req("SignatureNonce")?;
    if !nonces.fresh(nonce) {
        return Err(ApiError::new(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }
    Ok(())
}

//! Verifying a request the way the vendor does, signed either way it documents (see
//! `unicni_cloud::signer`): V3 (`Authorization: ACS3-HMAC-SHA256 ...`, with `x-acs-date`
//! and `x-acs-signature-nonce`) or V2 (HMAC-SHA1 over the query, `Timestamp` and
//! `SignatureNonce`): known access key, matching signature, fresh timestamp, unused nonce,
//! matching STS token. A signature that does not match is 400 `SignatureDoesNotMatch`
//! whose message ends with `server string to sign is:<StringToSign>`, as the vendor's:
//! its core SDK takes the text after the `:` and compares it with its own string to sign.

use crate::config::AccessKey;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::state::State;
use std::collections::{BTreeMap, HashSet, VecDeque};
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

/// What a V3 signature covers besides the method: the path, the query alone (the body
/// counts through its hash), the request headers and the raw body.
pub struct V3Request<'a> {
    pub path: &'a str,
    pub query: &'a BTreeMap<String, String>,
    pub header: &'a (dyn Fn(&str) -> Option<String> + Sync),
    pub body: &'a [u8],
}

fn mismatch(string_to_sign: &str) -> ApiError {
    ApiError::new(
        400,
        "SignatureDoesNotMatch",
        format!(
            "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
        ),
    )
}

/// The secret of `key_id`, and the STS token that must come with it when it is a
/// temporary key.
fn secret_of(
    key_id: &str,
    keys: &[AccessKey],
    state: &State,
) -> ApiResult<(String, Option<String>)> {
    if let Some(k) = keys.iter().find(|k| k.access_key_id == key_id) {
        Ok((k.access_key_secret.clone(), None))
    } else if let Some(sts) = state
        .instances
        .values()
        .filter_map(|i| i.sts.as_ref())
        .find(|s| s.access_key_id == key_id)
    {
        Ok((
            sts.access_key_secret.clone(),
            Some(sts.security_token.clone()),
        ))
    } else {
        Err(ApiError::new(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        ))
    }
}

fn check_token(expected: Option<String>, got: Option<&str>) -> ApiResult<()> {
    match expected {
        Some(tok) if got != Some(tok.as_str()) => Err(ApiError::new(
            400,
            "InvalidSecurityToken.MismatchWithAccessKey",
            "The SecurityToken does not belong to this access key.",
        )),
        _ => Ok(()),
    }
}

fn check_fresh(ts: &str, nonce: &str, nonces: &NonceCache, max_skew: Duration) -> ApiResult<()> {
    let when = humantime::parse_rfc3339_weak(ts).map_err(|_| ApiError::invalid("Timestamp", ts))?;
    let skew = SystemTime::now()
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
    if !nonces.fresh(nonce) {
        return Err(ApiError::new(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }
    Ok(())
}

/// A request carrying `Authorization: ACS3-HMAC-SHA256 ...`.
pub fn verify_v3(
    method: &str,
    authorization: &str,
    r: &V3Request<'_>,
    keys: &[AccessKey],
    state: &State,
    nonces: &NonceCache,
    max_skew: Duration,
) -> ApiResult<()> {
    let auth = signer::parse_v3_authorization(authorization).ok_or_else(|| {
        ApiError::new(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards: the Authorization \
             header must be `ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`.",
        )
    })?;
    let (secret, token) = secret_of(&auth.credential, keys, state)?;
    let mut signed = BTreeMap::new();
    for name in &auth.signed_headers {
        signed.insert(name.clone(), (r.header)(name).unwrap_or_default());
    }
    let canonical = signer::v3_canonical_request(
        method,
        r.path,
        r.query,
        &signed,
        &signer::sha256_hex(r.body),
    );
    let sts = signer::v3_string_to_sign(&canonical);
    if !signer::signatures_equal(&signer::v3_sign(&secret, &sts), &auth.signature) {
        return Err(mismatch(&sts));
    }
    // Only what the signature covers is trusted below.
    let signed_value = |h: &str| signed.get(h).map(String::as_str).filter(|v| !v.is_empty());
    check_token(token, signed_value("x-acs-security-token"))?;
    let ts = signed_value("x-acs-date").ok_or_else(|| ApiError::missing("x-acs-date"))?;
    let nonce = signed_value("x-acs-signature-nonce")
        .ok_or_else(|| ApiError::missing("x-acs-signature-nonce"))?;
    check_fresh(ts, nonce, nonces, max_skew)
}

/// A request signed the legacy way (V2), the signature among its parameters.
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
    let (secret, token) = secret_of(key_id, keys, state)?;
    let sts = signer::string_to_sign(method, &p.0);
    if !signer::signatures_equal(&signer::sign(&secret, &sts), signature) {
        return Err(mismatch(&sts));
    }
    check_token(token, p.get("SecurityToken"))?;
    let ts = p
        .get("Timestamp")
        .or_else(|| p.get("TimeStamp"))
        .ok_or_else(|| ApiError::missing("Timestamp"))?;
    let nonce = p.req("SignatureNonce")?;
    check_fresh(ts, nonce, nonces, max_skew)
}

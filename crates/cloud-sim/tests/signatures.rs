//! Signatures both ways: the production client signing V3 (default) and V2 (the
//! `cloud.signature_version` switch) against the emulator, and hand-made V3 requests the
//! emulator must refuse with the vendor's codes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;
use unicni_cloud::credentials::{Credentials, StaticProvider};
use unicni_cloud::signer;
use unicni_cloud::*;
use unicni_cloud_sim::*;

const KEY: &str = "sig-key";
const SECRET: &str = "sig-secret-value";

async fn start() -> RunningSim {
    let cfg = SimConfig {
        credentials: vec![AccessKey {
            access_key_id: KEY.into(),
            access_key_secret: SECRET.into(),
        }],
        ..Default::default()
    };
    let sim = CloudSim::new(cfg, None).unwrap();
    sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn client(endpoint: &str, secret: &str, v: SignatureVersion) -> AlibabaCloud {
    let mut o = ClientOptions::for_region("cn-hangzhou", Some(endpoint));
    o.retry.max_attempts = 1;
    o.signature_version = v;
    AlibabaCloud::new(o, Arc::new(StaticProvider(Credentials::new(KEY, secret)))).unwrap()
}

#[tokio::test]
async fn client_signs_both_ways_and_a_wrong_secret_is_refused_with_the_string_to_sign() {
    let sim = start().await;
    assert_eq!(
        ClientOptions::for_region("r", None).signature_version,
        SignatureVersion::V3,
        "V3 is the default"
    );
    for (v, algo) in [
        (SignatureVersion::V3, "ACS3-HMAC-SHA256\n"),
        (SignatureVersion::V2, "GET&%2F&"),
    ] {
        let good = client(&sim.endpoint(), SECRET, v);
        let types = good
            .describe_instance_types(&["ecs.g7.large".to_string()])
            .await
            .unwrap_or_else(|e| panic!("{v:?}: {e}"));
        assert_eq!(types.len(), 1, "{v:?}");
        let bad = client(&sim.endpoint(), "not-the-secret", v);
        let err = bad
            .describe_instance_types(&["ecs.g7.large".to_string()])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{v:?}: {err}");
        let text = format!("{err}");
        let sts = text
            .split_once("server string to sign is:")
            .unwrap_or_else(|| panic!("{v:?}: no string to sign in {text}"))
            .1;
        assert!(sts.starts_with(algo), "{v:?}: {sts}");
        assert!(!text.contains("not-the-secret"));
    }
    sim.stop().await;
}

/// A V3 request made by hand: `mutate` may spoil it after signing.
async fn raw_v3(
    sim: &RunningSim,
    key: &str,
    nonce: &str,
    mutate: impl FnOnce(&mut BTreeMap<String, String>),
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = sim.addr.to_string();
    let query: BTreeMap<String, String> = [("RegionId".to_string(), "cn-hangzhou".to_string())]
        .into_iter()
        .collect();
    let mut headers: BTreeMap<String, String> = [
        ("host", host.clone()),
        ("x-acs-action", "DescribeInstanceTypes".into()),
        ("x-acs-version", "2014-05-26".into()),
        (
            "x-acs-date",
            humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        ),
        ("x-acs-signature-nonce", nonce.into()),
        ("x-acs-content-sha256", signer::sha256_hex(b"")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let cr = signer::v3_canonical_request("POST", "/", &query, &headers, &signer::sha256_hex(b""));
    let sig = signer::v3_sign(SECRET, &signer::v3_string_to_sign(&cr));
    let auth = signer::v3_authorization(key, &headers, &sig);
    headers.insert("authorization".into(), auth);
    mutate(&mut headers);
    let mut req = format!("POST /?{} HTTP/1.1\r\n", signer::canonical_query(&query));
    for (k, v) in &headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("content-length: 0\r\nconnection: close\r\n\r\n");
    let mut s = tokio::net::TcpStream::connect(&host).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf[9..12].parse().unwrap();
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["Code"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn v3_refusals_carry_the_vendor_codes() {
    let sim = start().await;
    let (st, body) = raw_v3(&sim, KEY, "n-ok", |_| {}).await;
    assert_eq!(st, 200, "{body}");
    // The same nonce again is a replay.
    let (st, body) = raw_v3(&sim, KEY, "n-ok", |_| {}).await;
    assert_eq!((st, code(&body).as_str()), (400, "SignatureNonceUsed"));
    // A signed header changed after signing.
    let (st, body) = raw_v3(&sim, KEY, "n-2", |h| {
        h.insert("x-acs-action".into(), "DescribeNetworkInterfaces".into());
    })
    .await;
    assert_eq!((st, code(&body).as_str()), (400, "SignatureDoesNotMatch"));
    assert!(
        body.contains("server string to sign is:ACS3-HMAC-SHA256\\n"),
        "{body}"
    );
    let (st, body) = raw_v3(&sim, "nobody", "n-3", |_| {}).await;
    assert_eq!(
        (st, code(&body).as_str()),
        (404, "InvalidAccessKeyId.NotFound")
    );
    let (st, body) = raw_v3(&sim, KEY, "n-4", |h| {
        h.insert(
            "authorization".into(),
            "ACS3-HMAC-SHA256 Credential=x".into(),
        );
    })
    .await;
    assert_eq!((st, code(&body).as_str()), (400, "IncompleteSignature"));
    sim.stop().await;
}

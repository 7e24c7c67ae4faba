//! `cloud.signature_version`: V3 unless told otherwise, and a wrong value names the key.

use unicni_config::{load_str, Format, SignatureVersion};

#[test]
fn signature_version_defaults_to_v3_and_is_checked() {
    let c = load_str("", Format::Toml).unwrap();
    assert_eq!(c.cloud.signature_version, SignatureVersion::V3);
    let c = load_str("[cloud]\nsignature_version = \"v2\"\n", Format::Toml).unwrap();
    assert_eq!(c.cloud.signature_version, SignatureVersion::V2);
    let err = load_str("[cloud]\nsignature_version = \"v1\"\n", Format::Toml)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cloud.signature_version") && err.contains("v1") && err.contains("v3"),
        "{err}"
    );
}

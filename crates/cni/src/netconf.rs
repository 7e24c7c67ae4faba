//! The network configuration on stdin: the generic keys every plugin shares. Backend keys
//! stay in `raw` for the backend to decode.

use crate::{code, version, CniError};
use serde_json::Value;
use unicni_core::AttachmentId;

#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    pub prev_result: Option<Value>,
    /// GC's `cni.dev/valid-attachments` (or the older `cni.dev/attachments`).
    pub valid_attachments: Option<Vec<AttachmentId>>,
    /// The whole plugin object, for backend-specific keys.
    pub raw: Value,
}

fn invalid(field: &str, why: impl Into<String>) -> CniError {
    CniError::new(
        code::INVALID_CONFIG,
        format!("invalid network configuration: field {field:?}"),
        why.into(),
    )
}

impl NetConf {
    /// Decodes stdin. Accepts a single plugin config or, for direct invocation, a conflist
    /// (the entry whose `type` is `plugin_type` is used, with the list's name and version).
    pub fn parse(bytes: &[u8], plugin_type: &str) -> Result<NetConf, CniError> {
        let mut raw: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                "cannot decode the network configuration on stdin",
                format!("{e} (expected a JSON object)"),
            )
        })?;
        if !raw.is_object() {
            return Err(CniError::new(
                code::DECODE_FAILURE,
                "cannot decode the network configuration on stdin",
                "expected a JSON object",
            ));
        }
        if let Some(plugins) = raw.get("plugins").and_then(Value::as_array) {
            let entry = plugins
                .iter()
                .find(|p| p.get("type").and_then(Value::as_str) == Some(plugin_type))
                .cloned()
                .ok_or_else(|| {
                    invalid(
                        "plugins",
                        format!("no plugin of type {plugin_type:?} in the list"),
                    )
                })?;
            let mut entry = entry;
            for key in ["name", "cniVersion"] {
                if let Some(v) = raw.get(key).cloned() {
                    entry[key] = v;
                }
            }
            raw = entry;
        }
        let str_field = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_string);
        let cni_version = str_field("cniVersion")
            .ok_or_else(|| invalid("cniVersion", "it is required, e.g. \"1.1.0\""))?;
        version::check_supported(&cni_version)?;
        let name = match raw.get("name") {
            None | Some(Value::Null) => return Err(invalid("name", "it is required")),
            Some(Value::String(s)) => s.clone(),
            Some(other) => return Err(invalid("name", format!("{other} is not a string"))),
        };
        // The name becomes a directory (`<stateDir>/ipam/<name>`): "." or ".." would move
        // the state out of its place, so the spec's rule is checked before any path exists.
        if !crate::is_spec_identifier(&name) {
            return Err(invalid(
                "name",
                format!(
                    "{name:?} is not a valid network name: it must start with a letter or \
                     digit, followed by letters, digits, '_', '.' or '-'"
                ),
            ));
        }
        let plugin = str_field("type").ok_or_else(|| invalid("type", "it is required"))?;
        let prev_result = raw.get("prevResult").filter(|v| !v.is_null()).cloned();
        let valid_attachments = match raw
            .get("cni.dev/valid-attachments")
            .or_else(|| raw.get("cni.dev/attachments"))
        {
            None => None,
            Some(v) => Some(parse_attachments(v)?),
        };
        Ok(NetConf {
            cni_version,
            name,
            plugin_type: plugin,
            prev_result,
            valid_attachments,
            raw,
        })
    }
}

fn parse_attachments(v: &Value) -> Result<Vec<AttachmentId>, CniError> {
    let list = v.as_array().ok_or_else(|| {
        invalid(
            "cni.dev/valid-attachments",
            "expected a list of {containerID, ifname}",
        )
    })?;
    list.iter()
        .map(|a| {
            let cid = a.get("containerID").and_then(Value::as_str);
            let ifname = a.get("ifname").and_then(Value::as_str);
            match (cid, ifname) {
                (Some(c), Some(i)) => Ok(AttachmentId::new(c, i)),
                _ => Err(invalid(
                    "cni.dev/valid-attachments",
                    format!("entry {a} lacks containerID or ifname"),
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_config() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"unicni","bridge":"b0"}"#,
            "unicni",
        )
        .unwrap();
        assert_eq!(c.cni_version, "1.0.0");
        assert_eq!(c.raw["bridge"], "b0");
    }

    #[test]
    fn conflist_on_stdin_takes_our_entry() {
        let c = NetConf::parse(
            br#"{"cniVersion":"0.4.0","name":"n","plugins":[{"type":"unicni","bridge":"b"},{"type":"portmap"}]}"#,
            "unicni",
        )
        .unwrap();
        assert_eq!(c.cni_version, "0.4.0");
        assert_eq!(c.name, "n");
        assert_eq!(c.plugin_type, "unicni");
    }

    #[test]
    fn garbage_is_decode_failure() {
        assert_eq!(NetConf::parse(b"{not json", "unicni").unwrap_err().code, 6);
        assert_eq!(NetConf::parse(b"[1,2]", "unicni").unwrap_err().code, 6);
    }

    #[test]
    fn missing_fields_are_invalid_config() {
        let e = NetConf::parse(br#"{"name":"n","type":"unicni"}"#, "unicni").unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("cniVersion"));
        let e = NetConf::parse(br#"{"cniVersion":"1.1.0","type":"unicni"}"#, "unicni").unwrap_err();
        assert!(e.msg.contains("name"));
    }

    #[test]
    fn names_follow_the_spec_before_any_path_is_built() {
        for bad in [
            ".", "..", "../x", "a/b", "-net", "_net", ".hidden", "", "sp ace", "n\u{e9}t",
        ] {
            let body = serde_json::json!({"cniVersion": "1.1.0", "name": bad, "type": "unicni"});
            let e = NetConf::parse(body.to_string().as_bytes(), "unicni").unwrap_err();
            assert_eq!(e.code, 7, "{bad:?}: {e}");
            assert!(e.msg.contains("\"name\""), "{bad:?}: {e}");
        }
        for good in [
            "n",
            "cbr0",
            "unicni-test-1a2b03",
            "k8s-pod-network",
            "a.b_c-d",
            "9",
        ] {
            let body = serde_json::json!({"cniVersion": "1.1.0", "name": good, "type": "unicni"});
            NetConf::parse(body.to_string().as_bytes(), "unicni").unwrap();
        }
    }

    #[test]
    fn unknown_version_is_code_1() {
        let e = NetConf::parse(
            br#"{"cniVersion":"9.9.9","name":"n","type":"unicni"}"#,
            "unicni",
        )
        .unwrap_err();
        assert_eq!(e.code, 1);
    }

    #[test]
    fn gc_attachments_both_spellings() {
        for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
            let body = format!(
                r#"{{"cniVersion":"1.1.0","name":"n","type":"unicni","{key}":[{{"containerID":"c1","ifname":"eth0"}}]}}"#
            );
            let c = NetConf::parse(body.as_bytes(), "unicni").unwrap();
            assert_eq!(
                c.valid_attachments.unwrap(),
                vec![AttachmentId::new("c1", "eth0")]
            );
        }
    }
}

//! `CNI_ARGS`: `K=V;K=V` pairs from the runtime.

use crate::{code, CniError};

const KNOWN: &[&str] = &[
    "IgnoreUnknown",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_UID",
    "K8S_POD_INFRA_CONTAINER_ID",
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// Parses `raw`. A pair without `=` is an invalid environment variable (code 4); a key
    /// unicni does not know is refused (code 2) unless `IgnoreUnknown` is true, as the
    /// reference plugins do.
    pub fn parse(raw: &str) -> Result<CniArgs, CniError> {
        let mut pairs = Vec::new();
        for item in raw.split(';').filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                CniError::new(
                    code::INVALID_ENV,
                    "invalid environment variable CNI_ARGS",
                    format!("{item:?} is not KEY=VALUE; CNI_ARGS must be KEY=VALUE pairs separated by ';'"),
                )
            })?;
            pairs.push((k.to_string(), v.to_string()));
        }
        let args = CniArgs { pairs };
        let ignore = args
            .get("IgnoreUnknown")
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"))
            .unwrap_or(false);
        if !ignore {
            if let Some((k, v)) = args
                .pairs
                .iter()
                .find(|(k, _)| !KNOWN.contains(&k.as_str()))
            {
                return Err(CniError::new(
                    code::UNSUPPORTED_FIELD,
                    format!("unsupported CNI_ARGS key {k:?} (value {v:?})"),
                    format!(
                        "known keys: {}; set IgnoreUnknown=1 to skip others",
                        KNOWN.join(", ")
                    ),
                ));
            }
        }
        Ok(args)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_args() {
        let a = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1;Extra=x",
        )
        .unwrap();
        assert_eq!(a.get("K8S_POD_NAMESPACE"), Some("default"));
        assert_eq!(a.get("K8S_POD_NAME"), Some("web-0"));
        assert_eq!(a.get("K8S_POD_UID"), Some("u-1"));
    }

    #[test]
    fn empty_is_fine() {
        assert!(CniArgs::parse("").unwrap().pairs.is_empty());
    }

    #[test]
    fn unknown_key_without_ignore_is_code_2() {
        let e = CniArgs::parse("FOO=bar").unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.msg.contains("FOO"));
    }

    #[test]
    fn malformed_pair_is_code_4() {
        assert_eq!(CniArgs::parse("K8S_POD_NAME").unwrap_err().code, 4);
    }

    #[test]
    fn value_may_contain_equals() {
        let a = CniArgs::parse("K8S_POD_NAME=a=b").unwrap();
        assert_eq!(a.get("K8S_POD_NAME"), Some("a=b"));
    }
}

//! The request's parameters, with the API's `Name.N` list convention.

use crate::error::{ApiError, ApiResult};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<String, String>);

impl Params {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn req(&self, k: &str) -> ApiResult<&str> {
        self.get(k).ok_or_else(|| ApiError::missing(k))
    }

    pub fn num(&self, k: &str) -> ApiResult<Option<u64>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| ApiError::invalid(k, v)),
        }
    }

    /// Values of `Prefix.1`, `Prefix.2`, ... in index order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut items: Vec<(u32, String)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(prefix)?.strip_prefix('.')?;
                rest.parse::<u32>().ok().map(|n| (n, v.clone()))
            })
            .collect();
        items.sort();
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// `Tag.N.Key` / `Tag.N.Value` pairs.
    pub fn tags(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for n in 1..=20 {
            match self.get(&format!("Tag.{n}.Key")) {
                Some(k) => out.push((
                    k.to_string(),
                    self.get(&format!("Tag.{n}.Value"))
                        .unwrap_or("")
                        .to_string(),
                )),
                None => break,
            }
        }
        out
    }

    pub fn parse_list<T: std::str::FromStr>(&self, prefix: &str) -> ApiResult<Vec<T>> {
        self.list(prefix)
            .iter()
            .map(|v| v.parse().map_err(|_| ApiError::invalid(prefix, v)))
            .collect()
    }
}

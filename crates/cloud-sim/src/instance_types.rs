//! Instance-type ENI limits, read from the YAML table in testdata/.

use crate::error::SimError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The built-in table (REFERENCE.md's ENI table, one row per type).
pub const BUILTIN: &str = include_str!("../../../testdata/cloud/instance-types.yaml");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceType {
    pub name: String,
    pub enis: u32,
    pub ipv4_per_eni: u32,
    pub ipv6_per_eni: u32,
}

#[derive(Deserialize)]
struct File {
    #[allow(dead_code)]
    version: u32,
    instance_types: Vec<InstanceType>,
}

pub fn parse(text: &str, origin: &Path) -> Result<BTreeMap<String, InstanceType>, SimError> {
    let f: File = serde_yaml::from_str(text).map_err(|e| SimError::Parse {
        path: origin.into(),
        reason: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for t in f.instance_types {
        if t.enis == 0 || t.ipv4_per_eni == 0 {
            return Err(SimError::Parse {
                path: origin.into(),
                reason: format!(
                    "instance type {}: enis and ipv4_per_eni must be at least 1",
                    t.name
                ),
            });
        }
        out.insert(t.name.clone(), t);
    }
    Ok(out)
}

pub fn load(path: Option<&Path>) -> Result<BTreeMap<String, InstanceType>, SimError> {
    match path {
        None => parse(
            BUILTIN,
            Path::new("<built-in testdata/cloud/instance-types.yaml>"),
        ),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| SimError::Read {
                path: p.into(),
                source,
            })?;
            parse(&text, p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_matches_reference_checks() {
        let t = load(None).unwrap();
        let c7 = &t["ecs.c7.4xlarge"];
        assert_eq!((c7.enis - 1) * c7.ipv4_per_eni, 210);
        let c6 = &t["ecs.c6.4xlarge"];
        assert_eq!((c6.enis - 1) * c6.ipv4_per_eni, 140);
        assert_eq!(t["ecs.ebmg5s.24xlarge"].enis, 32);
    }

    /// The planner's built-in table and ours must not drift apart.
    #[test]
    fn agrees_with_capacity_table_when_present() {
        let other =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../capacity/data/instance-types.yaml");
        if let Ok(text) = std::fs::read_to_string(&other) {
            assert_eq!(parse(&text, &other).unwrap(), load(None).unwrap());
        }
    }
}

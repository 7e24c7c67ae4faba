//! ENI limits per ECS instance type and the pods-per-node formulas built on them.

use crate::limits::SHARED_ENI_MIN_PODS_EXCLUSIVE;
use crate::CapacityError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What DescribeInstanceTypes says about one type's networking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceTypeLimits {
    pub name: String,
    /// ENIs the instance can hold, the primary one included.
    pub enis: u64,
    pub ipv4_per_eni: u64,
    pub ipv6_per_eni: u64,
}

impl InstanceTypeLimits {
    /// Shared-ENI pods: every secondary ENI's addresses, `(enis - 1) * ipv4_per_eni`.
    /// The primary ENI stays the node's own.
    pub fn shared_pods(&self) -> u64 {
        self.enis.saturating_sub(1) * self.ipv4_per_eni
    }

    /// Exclusive-ENI pods: one secondary ENI per pod, `enis - 1`.
    pub fn exclusive_pods(&self) -> u64 {
        self.enis.saturating_sub(1)
    }

    /// The anchor refuses shared-ENI nodes that would hold 11 pods or fewer.
    pub fn shared_admitted(&self) -> bool {
        self.shared_pods() > SHARED_ENI_MIN_PODS_EXCLUSIVE
    }

    /// Dual stack in shared mode needs as many IPv6 as IPv4 addresses per ENI.
    pub fn shared_dual_stack(&self) -> bool {
        self.ipv6_per_eni > 0 && self.ipv6_per_eni == self.ipv4_per_eni
    }

    /// Pods in `mode` ("shared-eni" or "exclusive-eni").
    pub fn pods_in_mode(&self, exclusive: bool) -> u64 {
        if exclusive {
            self.exclusive_pods()
        } else {
            self.shared_pods()
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    instance_types: Vec<InstanceTypeLimits>,
}

const BUILTIN: &str = include_str!("../data/instance-types.yaml");

/// A lookup table of instance types, with a description of where it came from for errors.
#[derive(Debug, Clone)]
pub struct InstanceTypeTable {
    types: BTreeMap<String, InstanceTypeLimits>,
    source: String,
}

impl InstanceTypeTable {
    /// The table compiled into the binary (crates/capacity/data/instance-types.yaml).
    pub fn builtin() -> Self {
        Self::parse(BUILTIN, "built-in", false).expect("the built-in instance-type table parses")
    }

    /// Limits obtained elsewhere, e.g. from the cloud API's DescribeInstanceTypes: this is
    /// the seam through which a `Cloud` client feeds planning.
    pub fn from_limits(limits: Vec<InstanceTypeLimits>, source: impl Into<String>) -> Self {
        Self {
            types: limits.into_iter().map(|l| (l.name.clone(), l)).collect(),
            source: source.into(),
        }
    }

    /// The built-in table, overlaid with the override file `file` when given (what
    /// `--instance-types` does in `plan` and `assess`).
    pub fn builtin_with(file: Option<&Path>) -> Result<Self, CapacityError> {
        let table = Self::builtin();
        Ok(match file {
            Some(f) => table.overlay(Self::load(f)?),
            None => table,
        })
    }

    /// Reads an override file (YAML, or JSON when the name ends in `.json`).
    pub fn load(path: &Path) -> Result<Self, CapacityError> {
        let text = std::fs::read_to_string(path).map_err(|source| CapacityError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let json = path.extension().is_some_and(|e| e == "json");
        Self::parse(&text, &path.display().to_string(), json)
    }

    pub fn parse(text: &str, name: &str, json: bool) -> Result<Self, CapacityError> {
        let parse_err = |message: String| CapacityError::Parse {
            path: name.to_string(),
            message,
        };
        let file: File = if json {
            serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))?
        } else {
            serde_yaml::from_str(text).map_err(|e| parse_err(e.to_string()))?
        };
        let invalid = |message: String| CapacityError::Invalid {
            path: name.to_string(),
            message,
        };
        if file.version != 1 {
            return Err(invalid(format!(
                "field `version` = {}: this unicni reads version 1",
                file.version
            )));
        }
        let mut types = BTreeMap::new();
        for (i, t) in file.instance_types.into_iter().enumerate() {
            if t.name.is_empty() {
                return Err(invalid(format!("instance_types[{i}].name is empty")));
            }
            if t.enis == 0 {
                return Err(invalid(format!(
                    "instance_types[{i}] ({}): `enis` = 0, an instance has at least its primary ENI",
                    t.name
                )));
            }
            if let Some(prev) = types.insert(t.name.clone(), t) {
                return Err(invalid(format!(
                    "instance_types[{i}]: {:?} is listed twice",
                    prev.name
                )));
            }
        }
        Ok(Self {
            types,
            source: format!("{name} instance-type table"),
        })
    }

    /// This table with `other`'s entries added, replacing same-named ones.
    pub fn overlay(mut self, other: InstanceTypeTable) -> Self {
        self.source = format!("{} overlaid with the {}", self.source, other.source);
        self.types.extend(other.types);
        self
    }

    pub fn get(&self, name: &str) -> Option<&InstanceTypeLimits> {
        self.types.get(name)
    }

    /// Like [`get`](Self::get), with an error that says how to supply a missing type.
    pub fn require(&self, name: &str) -> Result<&InstanceTypeLimits, CapacityError> {
        self.get(name)
            .ok_or_else(|| CapacityError::UnknownInstanceType {
                name: name.to_string(),
                source_desc: self.source.clone(),
            })
    }

    pub fn describe(&self) -> &str {
        &self.source
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &InstanceTypeLimits> {
        self.types.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> InstanceTypeLimits {
        InstanceTypeTable::builtin().require(name).unwrap().clone()
    }

    #[test]
    fn seed_examples() {
        assert_eq!(t("ecs.c7.4xlarge").shared_pods(), 210);
        assert_eq!(t("ecs.c7.4xlarge").exclusive_pods(), 7);
        assert_eq!(t("ecs.c6.4xlarge").shared_pods(), 140);
    }

    #[test]
    fn every_row_of_the_reference_table() {
        // (type, shared, exclusive) as REFERENCE.md lists them.
        let rows = [
            ("ecs.g6.large", 6, 1),
            ("ecs.r6.xlarge", 20, 2),
            ("ecs.c6.2xlarge", 30, 3),
            ("ecs.g6.3xlarge", 50, 5),
            ("ecs.r6.8xlarge", 140, 7),
            ("ecs.g6.13xlarge", 120, 6),
            ("ecs.c6.26xlarge", 280, 14),
            ("ecs.g7.large", 12, 2),
            ("ecs.c7.2xlarge", 45, 3),
            ("ecs.r7.3xlarge", 105, 7),
            ("ecs.g7.16xlarge", 210, 7),
            ("ecs.c7.32xlarge", 420, 14),
            ("ecs.g8i.large", 12, 2),
            ("ecs.c8i.xlarge", 45, 3),
            ("ecs.g8i.3xlarge", 105, 7),
            ("ecs.c8i.12xlarge", 210, 7),
            ("ecs.g8i.24xlarge", 420, 14),
            ("ecs.c8i.48xlarge", 700, 14),
            ("ecs.ebmg5s.24xlarge", 310, 31),
        ];
        for (name, shared, exclusive) in rows {
            let l = t(name);
            assert_eq!(
                (l.shared_pods(), l.exclusive_pods()),
                (shared, exclusive),
                "{name}"
            );
        }
    }

    #[test]
    fn shared_admission_and_dual_stack() {
        assert!(!t("ecs.g6.large").shared_admitted(), "6 pods <= 11");
        assert!(t("ecs.g7.large").shared_admitted(), "12 pods > 11");
        assert!(t("ecs.g7.xlarge").shared_dual_stack());
        assert!(!t("ecs.g6.xlarge").shared_dual_stack());
        assert!(!t("ecs.ebmg5s.24xlarge").shared_dual_stack());
    }

    #[test]
    fn unknown_type_error_says_how_to_fix() {
        let e = InstanceTypeTable::builtin()
            .require("ecs.x9.huge")
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("ecs.x9.huge") && msg.contains("--instance-types"),
            "{msg}"
        );
    }

    #[test]
    fn override_replaces_and_extends() {
        let o = InstanceTypeTable::parse(
            "version: 1\ninstance_types:\n  - {name: ecs.c7.4xlarge, enis: 4, ipv4_per_eni: 10, ipv6_per_eni: 0}\n  - {name: ecs.new.big, enis: 9, ipv4_per_eni: 40, ipv6_per_eni: 40}\n",
            "o.yaml",
            false,
        )
        .unwrap();
        let table = InstanceTypeTable::builtin().overlay(o);
        assert_eq!(table.require("ecs.c7.4xlarge").unwrap().shared_pods(), 30);
        assert_eq!(table.require("ecs.new.big").unwrap().shared_pods(), 320);
        assert_eq!(table.require("ecs.c6.4xlarge").unwrap().shared_pods(), 140);
    }

    #[test]
    fn malformed_file_names_field_and_line() {
        let e = InstanceTypeTable::parse(
            "version: 1\ninstance_types:\n  - {name: a, enis: 3, ipv4_per_eni: x, ipv6_per_eni: 0}\n",
            "bad.yaml",
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bad.yaml") && e.contains("line 3"), "{e}");
        let e = InstanceTypeTable::parse(
            "{\"version\": 1,\n \"instance_types\": [{\"name\": \"a\", \"enis\": 2, \"ipv4_per_eni\": 1}]}",
            "bad.json",
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ipv6_per_eni") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn zero_enis_and_duplicates_are_refused() {
        let e = InstanceTypeTable::parse(
            "version: 1\ninstance_types:\n  - {name: a, enis: 0, ipv4_per_eni: 1, ipv6_per_eni: 0}\n",
            "z.yaml",
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`enis` = 0"), "{e}");
        let e = InstanceTypeTable::parse(
            "version: 1\ninstance_types:\n  - {name: a, enis: 2, ipv4_per_eni: 1, ipv6_per_eni: 0}\n  - {name: a, enis: 2, ipv4_per_eni: 1, ipv6_per_eni: 0}\n",
            "d.yaml",
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("twice"), "{e}");
    }
}

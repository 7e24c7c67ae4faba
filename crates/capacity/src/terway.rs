//! Terway address supply: free vSwitch addresses per zone.

use crate::VSwitch;
use std::collections::BTreeMap;

/// Free addresses per zone over the vSwitches whose IDs are in `ids` (all when `ids` is
/// empty), with the IDs of `ids` that `known` does not describe.
pub fn free_ips_by_zone<'a>(
    known: &'a [VSwitch],
    ids: &[String],
) -> (BTreeMap<&'a str, u64>, Vec<String>) {
    let mut zones: BTreeMap<&str, u64> = BTreeMap::new();
    for v in known {
        if ids.is_empty() || ids.contains(&v.id) {
            *zones.entry(v.zone.as_str()).or_default() += v.free_ips;
        }
    }
    let missing = ids
        .iter()
        .filter(|id| !known.iter().any(|v| &v.id == *id))
        .cloned()
        .collect();
    (zones, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vsw(id: &str, zone: &str, free: u64) -> VSwitch {
        VSwitch {
            id: id.into(),
            zone: zone.into(),
            cidr: "10.0.0.0/24".parse().unwrap(),
            free_ips: free,
        }
    }

    #[test]
    fn sums_per_zone_and_reports_unknown_ids() {
        let known = [
            vsw("vsw-a", "z-a", 10),
            vsw("vsw-b", "z-a", 5),
            vsw("vsw-c", "z-b", 7),
        ];
        let (zones, missing) =
            free_ips_by_zone(&known, &["vsw-a".into(), "vsw-c".into(), "vsw-x".into()]);
        assert_eq!(zones.get("z-a"), Some(&10));
        assert_eq!(zones.get("z-b"), Some(&7));
        assert_eq!(missing, ["vsw-x"]);
        let (all, _) = free_ips_by_zone(&known, &[]);
        assert_eq!(all.get("z-a"), Some(&15));
    }
}

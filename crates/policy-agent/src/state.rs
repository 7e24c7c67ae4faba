//! From compiled policies to the contents of the eBPF maps, and the incremental update
//! that moves the maps from what they hold to what they should hold.
//!
//! Desired state, for the local pods of one node:
//! - `pods`: every local pod address with its isolation flags (0 when no policy selects it:
//!   the program still tracks its flows, so connections it has when a policy arrives keep
//!   working);
//! - `rules`: for each isolated (pod address, direction), one entry per remote prefix of the
//!   pod's family ([`unicni_policy::DirectionRules::lpm_entries`]) allowing either anything
//!   or a set of (protocol, aligned port block).
//!
//! Port sets are shared by content: every distinct set gets one id, and a rule points at it.
//! The update never changes a set a rule points at: a changed set is a new id, the rule is
//! switched to it (one atomic map update), and the old id is removed once nothing points at
//! it. The order of the steps keeps every intermediate state at least as permissive as one
//! of the two ends for the pods being changed, and never touches conntrack:
//!
//! 1. new port sets;
//! 2. new and changed rules;
//! 3. pod flags (isolation on after its rules exist, off before they go);
//! 4. rules no longer wanted;
//! 5. port sets nothing uses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use unicni_bpf::policy::{
    PortEntry, RuleDirection, RuleKey, RuleValue, ISOLATED_EGRESS, ISOLATED_INGRESS,
};
use unicni_bpf::{BpfError, PolicyDatapath};
use unicni_policy::compile::port_prefixes;
use unicni_policy::{Compiled, DirectionRules, PortRange, Protocol};

/// One aligned port block of one protocol: (protocol number, first port, prefix length).
pub type PortBlock = (u8, u16, u8);

/// What a remote prefix allows, by content.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Allow {
    Any,
    Ports(BTreeSet<PortBlock>),
}

/// The maps' contents for a node, by content (port sets not yet numbered).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub pods: BTreeMap<IpAddr, u32>,
    pub rules: BTreeMap<RuleKey, Allow>,
}

impl Desired {
    pub fn from_compiled(compiled: &Compiled) -> Desired {
        let mut d = Desired::default();
        for (ip, rules) in &compiled.pods {
            let mut flags = 0;
            for (direction, dr, flag) in [
                (RuleDirection::Ingress, &rules.ingress, ISOLATED_INGRESS),
                (RuleDirection::Egress, &rules.egress, ISOLATED_EGRESS),
            ] {
                if !dr.isolated {
                    continue;
                }
                flags |= flag;
                add_rules(&mut d.rules, *ip, direction, dr);
            }
            d.pods.insert(*ip, flags);
        }
        d
    }

    /// Distinct port sets the rules use.
    pub fn port_sets(&self) -> BTreeSet<&BTreeSet<PortBlock>> {
        self.rules
            .values()
            .filter_map(|a| match a {
                Allow::Ports(p) => Some(p),
                Allow::Any => None,
            })
            .collect()
    }
}

fn add_rules(
    out: &mut BTreeMap<RuleKey, Allow>,
    local: IpAddr,
    direction: RuleDirection,
    rules: &DirectionRules,
) {
    for entry in rules.lpm_entries() {
        if entry.prefix.addr().is_ipv4() != local.is_ipv4() {
            continue;
        }
        let key = RuleKey {
            direction,
            local,
            remote: entry.prefix.network(),
            prefix_len: entry.prefix.prefix_len(),
        };
        let any = entry
            .ports
            .iter()
            .any(|(p, range)| p.is_none() && *range == PortRange::ALL);
        let allow = if any {
            Allow::Any
        } else {
            let mut blocks = BTreeSet::new();
            for (protocol, range) in &entry.ports {
                // "Any protocol" only ever comes with every port (handled above); should a
                // narrower one appear, it means each protocol that has ports.
                let protocols = match protocol {
                    Some(p) => vec![*p],
                    None => vec![Protocol::Tcp, Protocol::Udp, Protocol::Sctp],
                };
                for p in protocols {
                    for (port, len) in port_prefixes(*range) {
                        blocks.insert((p.number(), port, len));
                    }
                }
            }
            Allow::Ports(blocks)
        };
        out.insert(key, allow);
    }
}

/// The operations on the maps the update needs; [`PolicyDatapath`] in the agent, a plain
/// in-memory model in unit tests.
pub trait PolicyMaps {
    fn pods(&self) -> Result<Vec<(IpAddr, u32)>, BpfError>;
    fn set_pod(&mut self, ip: IpAddr, flags: u32) -> Result<(), BpfError>;
    fn remove_pod(&mut self, ip: IpAddr) -> Result<(), BpfError>;
    fn rules(&self) -> Result<Vec<(RuleKey, RuleValue)>, BpfError>;
    fn upsert_rule(&mut self, key: &RuleKey, value: RuleValue) -> Result<(), BpfError>;
    fn remove_rule(&mut self, key: &RuleKey) -> Result<(), BpfError>;
    fn ports(&self) -> Result<Vec<PortEntry>, BpfError>;
    fn add_port(&mut self, e: &PortEntry) -> Result<(), BpfError>;
    fn remove_port(&mut self, e: &PortEntry) -> Result<(), BpfError>;
}

impl PolicyMaps for PolicyDatapath {
    fn pods(&self) -> Result<Vec<(IpAddr, u32)>, BpfError> {
        PolicyDatapath::pods(self)
    }
    fn set_pod(&mut self, ip: IpAddr, flags: u32) -> Result<(), BpfError> {
        PolicyDatapath::set_pod(self, ip, flags)
    }
    fn remove_pod(&mut self, ip: IpAddr) -> Result<(), BpfError> {
        PolicyDatapath::remove_pod(self, ip)
    }
    fn rules(&self) -> Result<Vec<(RuleKey, RuleValue)>, BpfError> {
        PolicyDatapath::rules(self)
    }
    fn upsert_rule(&mut self, key: &RuleKey, value: RuleValue) -> Result<(), BpfError> {
        PolicyDatapath::upsert_rule(self, key, value)
    }
    fn remove_rule(&mut self, key: &RuleKey) -> Result<(), BpfError> {
        PolicyDatapath::remove_rule(self, key)
    }
    fn ports(&self) -> Result<Vec<PortEntry>, BpfError> {
        PolicyDatapath::ports(self)
    }
    fn add_port(&mut self, e: &PortEntry) -> Result<(), BpfError> {
        PolicyDatapath::add_port(self, e)
    }
    fn remove_port(&mut self, e: &PortEntry) -> Result<(), BpfError> {
        PolicyDatapath::remove_port(self, e)
    }
}

/// What the maps hold, as the engine last wrote (or read back) it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub pods: BTreeMap<IpAddr, u32>,
    pub rules: BTreeMap<RuleKey, RuleValue>,
    pub sets: BTreeMap<u32, BTreeSet<PortBlock>>,
}

/// Map operations one update made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    pub ports_added: usize,
    pub ports_removed: usize,
    pub rules_written: usize,
    pub rules_removed: usize,
    pub pods_written: usize,
    pub pods_removed: usize,
}

impl Changes {
    pub fn total(&self) -> usize {
        self.ports_added
            + self.ports_removed
            + self.rules_written
            + self.rules_removed
            + self.pods_written
            + self.pods_removed
    }
}

impl Applied {
    /// Reads back what the maps hold (at start, or after a failed update).
    pub fn read(maps: &impl PolicyMaps) -> Result<Applied, BpfError> {
        let mut a = Applied {
            pods: maps.pods()?.into_iter().collect(),
            rules: maps.rules()?.into_iter().collect(),
            sets: BTreeMap::new(),
        };
        for e in maps.ports()? {
            a.sets
                .entry(e.port_set)
                .or_default()
                .insert((e.protocol, e.port, e.prefix_len));
        }
        Ok(a)
    }

    /// Moves the maps (which hold `self`) to `desired`; `self` follows every successful
    /// operation, so after an error it still describes the maps.
    pub fn update(
        &mut self,
        maps: &mut impl PolicyMaps,
        desired: &Desired,
    ) -> Result<Changes, BpfError> {
        let mut c = Changes::default();
        // 1. Port sets: reuse an id with the same content, else a new one.
        let mut by_content: BTreeMap<BTreeSet<PortBlock>, u32> = BTreeMap::new();
        for (id, blocks) in &self.sets {
            by_content.entry(blocks.clone()).or_insert(*id);
        }
        for set in desired.port_sets() {
            if by_content.contains_key(set) {
                continue;
            }
            let id = self.free_id();
            // Recorded before the writes: a half-written set is removed as unused later.
            self.sets.insert(id, BTreeSet::new());
            for &block in set {
                maps.add_port(&port_entry(id, block))?;
                self.sets
                    .get_mut(&id)
                    .expect("inserted above")
                    .insert(block);
                c.ports_added += 1;
            }
            by_content.insert(set.clone(), id);
        }
        // 2. New and changed rules.
        for (key, allow) in &desired.rules {
            let value = match allow {
                Allow::Any => RuleValue::Any,
                Allow::Ports(set) => RuleValue::PortSet(by_content[set]),
            };
            if self.rules.get(key) != Some(&value) {
                maps.upsert_rule(key, value)?;
                self.rules.insert(*key, value);
                c.rules_written += 1;
            }
        }
        // 3. Pods.
        for (ip, flags) in &desired.pods {
            if self.pods.get(ip) != Some(flags) {
                maps.set_pod(*ip, *flags)?;
                self.pods.insert(*ip, *flags);
                c.pods_written += 1;
            }
        }
        for ip in keys_not_in(&self.pods, |ip| desired.pods.contains_key(ip)) {
            maps.remove_pod(ip)?;
            self.pods.remove(&ip);
            c.pods_removed += 1;
        }
        // 4. Rules no longer wanted.
        for key in keys_not_in(&self.rules, |k| desired.rules.contains_key(k)) {
            maps.remove_rule(&key)?;
            self.rules.remove(&key);
            c.rules_removed += 1;
        }
        // 5. Port sets nothing points at.
        let used: BTreeSet<u32> = self
            .rules
            .values()
            .filter_map(|v| match v {
                RuleValue::PortSet(id) => Some(*id),
                RuleValue::Any => None,
            })
            .collect();
        for id in keys_not_in(&self.sets, |id| used.contains(id)) {
            let blocks: Vec<PortBlock> = self.sets[&id].iter().copied().collect();
            for block in blocks {
                maps.remove_port(&port_entry(id, block))?;
                self.sets.get_mut(&id).expect("listed above").remove(&block);
                c.ports_removed += 1;
            }
            self.sets.remove(&id);
        }
        Ok(c)
    }

    /// The lowest port set id not in use (ids start at 1).
    fn free_id(&self) -> u32 {
        (1..)
            .find(|id| !self.sets.contains_key(id))
            .expect("fewer than 2^32 sets")
    }
}

/// The map entry of one block of port set `id`.
fn port_entry(id: u32, (protocol, port, prefix_len): PortBlock) -> PortEntry {
    PortEntry {
        port_set: id,
        protocol,
        port,
        prefix_len,
    }
}

/// The keys of `map` that `keep` rejects, collected so the map can change while they are
/// removed.
fn keys_not_in<K: Copy, V>(map: &BTreeMap<K, V>, keep: impl Fn(&K) -> bool) -> Vec<K> {
    map.keys().filter(|k| !keep(k)).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use unicni_policy::{compile_where, load_str};

    /// The maps as plain collections.
    #[derive(Default)]
    struct FakeMaps {
        pods: BTreeMap<IpAddr, u32>,
        rules: BTreeMap<RuleKey, RuleValue>,
        ports: BTreeSet<PortEntry>,
        /// Operations, for order checks.
        log: Vec<String>,
    }

    impl PolicyMaps for FakeMaps {
        fn pods(&self) -> Result<Vec<(IpAddr, u32)>, BpfError> {
            Ok(self.pods.iter().map(|(k, v)| (*k, *v)).collect())
        }
        fn set_pod(&mut self, ip: IpAddr, flags: u32) -> Result<(), BpfError> {
            self.log.push(format!("pod {ip} {flags}"));
            self.pods.insert(ip, flags);
            Ok(())
        }
        fn remove_pod(&mut self, ip: IpAddr) -> Result<(), BpfError> {
            self.log.push(format!("-pod {ip}"));
            self.pods.remove(&ip);
            Ok(())
        }
        fn rules(&self) -> Result<Vec<(RuleKey, RuleValue)>, BpfError> {
            Ok(self.rules.iter().map(|(k, v)| (*k, *v)).collect())
        }
        fn upsert_rule(&mut self, key: &RuleKey, value: RuleValue) -> Result<(), BpfError> {
            if let RuleValue::PortSet(id) = value {
                assert!(
                    self.ports.iter().any(|p| p.port_set == id),
                    "rule points at an empty set"
                );
            }
            self.log
                .push(format!("rule {}/{}", key.remote, key.prefix_len));
            self.rules.insert(*key, value);
            Ok(())
        }
        fn remove_rule(&mut self, key: &RuleKey) -> Result<(), BpfError> {
            self.log
                .push(format!("-rule {}/{}", key.remote, key.prefix_len));
            self.rules.remove(key);
            Ok(())
        }
        fn ports(&self) -> Result<Vec<PortEntry>, BpfError> {
            Ok(self.ports.iter().copied().collect())
        }
        fn add_port(&mut self, e: &PortEntry) -> Result<(), BpfError> {
            self.ports.insert(*e);
            Ok(())
        }
        fn remove_port(&mut self, e: &PortEntry) -> Result<(), BpfError> {
            assert!(
                !self
                    .rules
                    .values()
                    .any(|v| *v == RuleValue::PortSet(e.port_set)),
                "removing a set still in use"
            );
            self.ports.remove(e);
            Ok(())
        }
    }

    const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  nodeName: n1
  containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]
status: {podIPs: [{ip: 10.0.1.2}, {ip: "fd00::2"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {nodeName: n2, containers: [{name: c}]}
status: {podIP: 10.0.2.2}
"#;

    fn desired(policies: &str) -> Desired {
        let snap = load_str("test.yaml", &format!("{PODS}---\n{policies}")).unwrap();
        Desired::from_compiled(&compile_where(&snap, |p| p.node.as_deref() == Some("n1")))
    }

    const ALLOW_CLIENT_HTTP: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: http}, {port: 9000, endPort: 9001, protocol: UDP}]
"#;

    #[test]
    fn desired_state_has_local_pods_only_and_rules_per_family() {
        let d = desired(ALLOW_CLIENT_HTTP);
        let web4: IpAddr = "10.0.1.2".parse().unwrap();
        let web6: IpAddr = "fd00::2".parse().unwrap();
        assert_eq!(
            d.pods,
            BTreeMap::from([(web4, ISOLATED_INGRESS), (web6, ISOLATED_INGRESS)])
        );
        // The client has only an IPv4 address: one rule, for the IPv4 address of web; the
        // IPv6 address of web is isolated with nothing allowed.
        let key = RuleKey {
            direction: RuleDirection::Ingress,
            local: web4,
            remote: "10.0.2.2".parse().unwrap(),
            prefix_len: 32,
        };
        assert_eq!(d.rules.len(), 1);
        assert_eq!(
            d.rules[&key],
            Allow::Ports(BTreeSet::from([(6, 8080, 16), (17, 9000, 15)]))
        );
        // No policy: pods present, not isolated, no rules.
        let d = desired("");
        assert_eq!(d.pods.values().copied().collect::<Vec<_>>(), vec![0, 0]);
        assert!(d.rules.is_empty());
    }

    #[test]
    fn updates_are_incremental_ordered_and_share_port_sets() {
        let mut maps = FakeMaps::default();
        let mut applied = Applied::read(&maps).unwrap();
        let c = applied.update(&mut maps, &desired("")).unwrap();
        assert_eq!(c.pods_written, 2);
        let c = applied
            .update(&mut maps, &desired(ALLOW_CLIENT_HTTP))
            .unwrap();
        assert_eq!((c.rules_written, c.pods_written, c.ports_added), (1, 2, 2));
        // Isolation after the rule it needs.
        let rule_at = maps.log.iter().position(|l| l.starts_with("rule")).unwrap();
        let iso_at = maps.log.iter().position(|l| l.ends_with(" 1")).unwrap();
        assert!(rule_at < iso_at, "{:?}", maps.log);
        // Applying the same state again changes nothing.
        let c = applied
            .update(&mut maps, &desired(ALLOW_CLIENT_HTTP))
            .unwrap();
        assert_eq!(c.total(), 0);
        // What is read back equals what was written.
        assert_eq!(Applied::read(&maps).unwrap(), applied);

        // A changed port: a new set, the rule switched, the old set removed.
        maps.log.clear();
        let changed = ALLOW_CLIENT_HTTP.replace("endPort: 9001", "endPort: 9003");
        let c = applied.update(&mut maps, &desired(&changed)).unwrap();
        assert_eq!(
            (c.rules_written, c.rules_removed, c.pods_written),
            (1, 0, 0)
        );
        assert_eq!(c.ports_removed, 2);
        let ids: BTreeSet<u32> = maps.ports.iter().map(|p| p.port_set).collect();
        assert_eq!(ids.len(), 1, "only the new set is left");

        // Policy removed: isolation off before the rules go.
        maps.log.clear();
        applied.update(&mut maps, &desired("")).unwrap();
        let iso_off = maps.log.iter().position(|l| l.ends_with(" 0")).unwrap();
        let rule_gone = maps
            .log
            .iter()
            .position(|l| l.starts_with("-rule"))
            .unwrap();
        assert!(iso_off < rule_gone, "{:?}", maps.log);
        assert!(maps.rules.is_empty() && maps.ports.is_empty());
        assert_eq!(maps.pods.len(), 2, "local pods stay tracked");
    }

    #[test]
    fn identical_port_sets_share_one_id() {
        let two = format!(
            "{ALLOW_CLIENT_HTTP}---\n{}",
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 192.168.0.0/16}}, {ipBlock: {cidr: "fd00:1::/64"}}]
    ports: [{port: 8080}, {port: 9000, endPort: 9001, protocol: UDP}]
"#
        );
        let mut maps = FakeMaps::default();
        let mut applied = Applied::default();
        applied.update(&mut maps, &desired(&two)).unwrap();
        // Ingress from the client and egress to both blocks: one set (TCP 8080, UDP
        // 9000-9001), three rules.
        assert_eq!(maps.rules.len(), 3);
        let ids: BTreeSet<u32> = maps.ports.iter().map(|p| p.port_set).collect();
        assert_eq!(ids.len(), 1);
        assert_eq!(maps.pods.values().copied().max(), Some(3));
    }
}

//! VPC and vSwitches: CIDRs and the addresses taken from them.

use crate::error::{ApiError, ApiResult};
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The code CreateNetworkInterface answers when the vSwitch has no free address.
pub const IP_NOT_ENOUGH: &str = "InvalidVSwitchId.IpNotEnough";

/// IPv4 prefix delegation hands out /28 blocks (16 addresses).
pub const PREFIX_LEN_V4: u8 = 28;
/// IPv6 prefix delegation hands out /80 blocks.
pub const PREFIX_LEN_V6: u8 = 80;

trait AllHosts {
    /// Every address of the block, network and broadcast included (a delegated prefix
    /// is routed whole).
    fn hosts_all(&self) -> Vec<Ipv4Addr>;
}

impl AllHosts for Ipv4Net {
    fn hosts_all(&self) -> Vec<Ipv4Addr> {
        (u32::from(self.network())..=u32::from(self.broadcast()))
            .map(Ipv4Addr::from)
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vpc {
    pub id: String,
    pub cidr: Ipv4Net,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VSwitch {
    pub id: String,
    pub vpc_id: String,
    pub zone: String,
    pub cidr: Ipv4Net,
    pub ipv6_cidr: Option<Ipv6Net>,
    pub used: BTreeSet<Ipv4Addr>,
    pub used6: BTreeSet<Ipv6Addr>,
    /// /80 prefixes handed out.
    #[serde(default)]
    pub prefixes6: BTreeSet<Ipv6Net>,
}

impl VSwitch {
    /// The vendor reserves the network address and the last three of every vSwitch; the
    /// first of those three is the gateway.
    fn reserved(&self, ip: Ipv4Addr) -> bool {
        let first = u32::from(self.cidr.network());
        let last = u32::from(self.cidr.broadcast());
        let n = u32::from(ip);
        n == first || n + 3 > last
    }

    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.broadcast()) - 2)
    }

    /// The IPv6 gateway: the first address after the network's (never handed out).
    pub fn gateway_v6(&self) -> Option<Ipv6Addr> {
        self.ipv6_cidr
            .map(|n| Ipv6Addr::from(u128::from(n.network()) + 1))
    }

    pub fn available(&self) -> u64 {
        let total = 1u64 << (32 - self.cidr.prefix_len());
        total
            .saturating_sub(4)
            .saturating_sub(self.used.len() as u64)
    }

    /// "ECS API CreateNetworkInterface, error codes": `InvalidVSwitchId.IpNotEnough`.
    fn ip_not_enough(&self) -> ApiError {
        ApiError::new(
            403,
            IP_NOT_ENOUGH,
            format!(
                "The specified VSwitch {} has not enough IpAddress.",
                self.id
            ),
        )
    }

    /// Takes `n` free addresses, lowest first; all or none.
    pub fn take_v4(&mut self, n: usize) -> ApiResult<Vec<Ipv4Addr>> {
        if (self.available() as usize) < n {
            return Err(self.ip_not_enough());
        }
        let picked: Vec<Ipv4Addr> = self
            .cidr
            .hosts()
            .filter(|ip| !self.reserved(*ip) && !self.used.contains(ip))
            .take(n)
            .collect();
        if picked.len() < n {
            return Err(self.ip_not_enough());
        }
        self.used.extend(picked.iter().copied());
        Ok(picked)
    }

    /// Takes exactly these addresses; all or none.
    pub fn take_exact_v4(&mut self, ips: &[Ipv4Addr]) -> ApiResult<()> {
        for ip in ips {
            if !self.cidr.contains(ip) || self.reserved(*ip) {
                return Err(ApiError::new(
                    400,
                    "InvalidPrivateIpAddress.Malformed",
                    format!(
                        "The IP {ip} is not a usable address of VSwitch {} ({}).",
                        self.id, self.cidr
                    ),
                ));
            }
            if self.used.contains(ip) {
                return Err(ApiError::new(
                    400,
                    "InvalidPrivateIpAddress.Duplicated",
                    format!("The IP {ip} is already in use in VSwitch {}.", self.id),
                ));
            }
        }
        self.used.extend(ips.iter().copied());
        Ok(())
    }

    pub fn release_v4(&mut self, ips: &[Ipv4Addr]) {
        for ip in ips {
            self.used.remove(ip);
        }
    }

    /// The aligned /28 blocks of the vSwitch CIDR whose 16 addresses are all free and
    /// none reserved, lowest first. A prefix's addresses are marked used like single
    /// addresses, so the two never overlap and `available` counts both.
    fn free_prefixes(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        let len = self.cidr.prefix_len().max(PREFIX_LEN_V4);
        self.cidr
            .subnets(len)
            .into_iter()
            .flatten()
            .filter(move |n| n.prefix_len() == PREFIX_LEN_V4)
            .filter(|n| {
                let first = u32::from(n.network());
                (first..=u32::from(n.broadcast())).all(|i| {
                    let ip = Ipv4Addr::from(i);
                    !self.reserved(ip) && !self.used.contains(&ip)
                })
            })
    }

    /// Takes `n` free /28 prefixes; all or none. A vSwitch with free addresses but no
    /// free aligned block (fragmented by single addresses) runs out all the same.
    pub fn take_v4_prefixes(&mut self, n: usize) -> ApiResult<Vec<Ipv4Net>> {
        let picked: Vec<Ipv4Net> = self.free_prefixes().take(n).collect();
        if picked.len() < n {
            return Err(self.ip_not_enough());
        }
        for p in &picked {
            self.used.extend(p.hosts_all());
        }
        Ok(picked)
    }

    /// Takes exactly these prefixes; all or none.
    pub fn take_exact_v4_prefixes(&mut self, nets: &[Ipv4Net]) -> ApiResult<()> {
        for n in nets {
            if n.prefix_len() != PREFIX_LEN_V4 || n.network() != n.addr() {
                return Err(ApiError::new(
                    400,
                    "InvalidParameter.Ipv4Prefix",
                    format!("{n} is not an aligned /28 prefix."),
                ));
            }
            if !self.free_prefixes().any(|f| f == *n) {
                return Err(ApiError::new(
                    400,
                    "InvalidPrivateIpAddress.Duplicated",
                    format!(
                        "The prefix {n} is not a free block of VSwitch {} ({}).",
                        self.id, self.cidr
                    ),
                ));
            }
        }
        for n in nets {
            self.used.extend(n.hosts_all());
        }
        Ok(())
    }

    pub fn release_v4_prefixes(&mut self, nets: &[Ipv4Net]) {
        for n in nets {
            for ip in n.hosts_all() {
                self.used.remove(&ip);
            }
        }
    }

    /// Takes `n` free /80 prefixes of the vSwitch's /64: never the first /80 (single
    /// IPv6 addresses are taken from its start), never one holding a used address.
    pub fn take_v6_prefixes(&mut self, n: usize) -> ApiResult<Vec<Ipv6Net>> {
        let net = self.v6_net()?;
        let step = 1u128 << (128 - PREFIX_LEN_V6);
        let base = u128::from(net.network());
        let mut out = Vec::new();
        let mut i = 1u128;
        while out.len() < n {
            let start = base + i * step;
            let p = Ipv6Net::new(Ipv6Addr::from(start), PREFIX_LEN_V6).expect("valid length");
            if !net.contains(&p.network()) || i >= 1 << 16 {
                return Err(self.ip_not_enough());
            }
            let busy = self.prefixes6.contains(&p)
                || self
                    .used6
                    .range(Ipv6Addr::from(start)..=Ipv6Addr::from(start + step - 1))
                    .next()
                    .is_some();
            if !busy {
                out.push(p);
            }
            i += 1;
        }
        self.prefixes6.extend(out.iter().copied());
        Ok(out)
    }

    pub fn release_v6_prefixes(&mut self, nets: &[Ipv6Net]) {
        for n in nets {
            self.prefixes6.remove(n);
        }
    }

    fn v6_net(&self) -> ApiResult<Ipv6Net> {
        self.ipv6_cidr.ok_or_else(|| {
            ApiError::new(
                // "ECS API AssignIpv6Addresses, error codes": InvalidVSwitch.Ipv6NotTurnOn.
                403,
                "InvalidVSwitch.Ipv6NotTurnOn",
                format!("The VSwitch {} has no IPv6 CIDR block.", self.id),
            )
        })
    }

    pub fn take_v6(&mut self, n: usize) -> ApiResult<Vec<Ipv6Addr>> {
        let net = self.v6_net()?;
        let base = u128::from(net.network());
        let mut out = Vec::new();
        // Host part counts up from 2 (0 is the network, 1 the gateway); a /64 never runs
        // out in an emulator's lifetime.
        let mut i = 2u128;
        while out.len() < n {
            let ip = Ipv6Addr::from(base + i);
            if !net.contains(&ip) {
                return Err(self.ip_not_enough());
            }
            if !self.used6.contains(&ip) {
                out.push(ip);
            }
            i += 1;
        }
        self.used6.extend(out.iter().copied());
        Ok(out)
    }

    pub fn take_exact_v6(&mut self, ips: &[Ipv6Addr]) -> ApiResult<()> {
        let net = self.v6_net()?;
        for ip in ips {
            if !net.contains(ip)
                || self.used6.contains(ip)
                || *ip == net.network()
                || Some(*ip) == self.gateway_v6()
            {
                return Err(ApiError::new(
                    400,
                    "InvalidIpv6Address.Malformed",
                    format!(
                        "The IPv6 address {ip} is not free in VSwitch {} ({net}).",
                        self.id
                    ),
                ));
            }
        }
        self.used6.extend(ips.iter().copied());
        Ok(())
    }

    pub fn release_v6(&mut self, ips: &[Ipv6Addr]) {
        for ip in ips {
            self.used6.remove(ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vsw(cidr: &str) -> VSwitch {
        VSwitch {
            id: "vsw-t".into(),
            vpc_id: "vpc".into(),
            zone: "z".into(),
            cidr: cidr.parse().unwrap(),
            ipv6_cidr: None,
            used: BTreeSet::new(),
            used6: BTreeSet::new(),
            prefixes6: BTreeSet::new(),
        }
    }

    #[test]
    fn prefixes_are_aligned_free_blocks_apart_from_single_addresses() {
        // /26: blocks .0/28 (holds the network address), .16, .32, .48 (holds the
        // three reserved at the end).
        let mut v = vsw("10.0.0.0/26");
        let single = v.take_v4(1).unwrap();
        assert_eq!(single[0], "10.0.0.1".parse::<Ipv4Addr>().unwrap());
        let got = v.take_v4_prefixes(2).unwrap();
        assert_eq!(
            got,
            vec![
                "10.0.0.16/28".parse::<Ipv4Net>().unwrap(),
                "10.0.0.32/28".parse().unwrap()
            ]
        );
        // No aligned free block is left, though addresses are.
        assert!(v.available() > 0);
        assert_eq!(
            v.take_v4_prefixes(1).unwrap_err().code,
            "InvalidVSwitchId.IpNotEnough"
        );
        // Single addresses never land inside a prefix.
        let more = v.take_v4(5).unwrap();
        assert!(more.iter().all(|ip| !got.iter().any(|p| p.contains(ip))));
        v.release_v4_prefixes(&got[..1]);
        assert_eq!(v.take_v4_prefixes(1).unwrap(), vec![got[0]]);
        assert!(v.take_exact_v4_prefixes(&[got[1]]).is_err());
        assert!(v
            .take_exact_v4_prefixes(&["10.0.0.8/28".parse().unwrap()])
            .is_err());
    }

    #[test]
    fn ipv6_prefixes_skip_the_first_80_and_each_other() {
        let mut v = vsw("10.0.0.0/24");
        v.ipv6_cidr = Some("fd00:252::/64".parse().unwrap());
        v.take_v6(3).unwrap();
        let a = v.take_v6_prefixes(1).unwrap();
        let b = v.take_v6_prefixes(1).unwrap();
        assert_eq!(a[0].to_string(), "fd00:252:0:0:1::/80");
        assert_ne!(a, b);
        v.release_v6_prefixes(&a);
        assert_eq!(v.take_v6_prefixes(1).unwrap(), a);
    }

    #[test]
    fn reserves_vendor_addresses_and_runs_out() {
        let mut v = vsw("10.0.0.0/29");
        assert_eq!(v.gateway(), "10.0.0.5".parse::<Ipv4Addr>().unwrap());
        assert_eq!(v.available(), 4);
        let got = v.take_v4(4).unwrap();
        assert_eq!(got[0], "10.0.0.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(got[3], "10.0.0.4".parse::<Ipv4Addr>().unwrap());
        assert_eq!(
            v.take_v4(1).unwrap_err().code,
            "InvalidVSwitchId.IpNotEnough"
        );
        v.release_v4(&got[..1]);
        assert_eq!(v.available(), 1);
        assert_eq!(
            v.take_v6(1).unwrap_err().code,
            "InvalidVSwitch.Ipv6NotTurnOn"
        );
    }

    #[test]
    fn ipv6_gateway_is_never_handed_out() {
        let mut v = vsw("10.0.0.0/24");
        v.ipv6_cidr = Some("fd00:252::/64".parse().unwrap());
        let gw: Ipv6Addr = "fd00:252::1".parse().unwrap();
        assert_eq!(v.gateway_v6(), Some(gw));
        let got = v.take_v6(2).unwrap();
        assert_eq!(got[0], "fd00:252::2".parse::<Ipv6Addr>().unwrap());
        assert!(!got.contains(&gw));
        assert!(v.take_exact_v6(&[gw]).is_err());
        assert!(v.take_exact_v6(&["fd00:252::".parse().unwrap()]).is_err());
    }
}

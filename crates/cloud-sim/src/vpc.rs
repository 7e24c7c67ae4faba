//! VPC and vSwitches: CIDRs and the addresses taken from them.

use crate::error::{ApiError, ApiResult};
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The code CreateNetworkInterface answers when the vSwitch has no free address.
pub const IP_NOT_ENOUGH: &str = "InvalidVSwitchId.IpNotEnough";

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
        }
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

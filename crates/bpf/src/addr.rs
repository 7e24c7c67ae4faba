//! Addresses as the programs' maps key them: 16 bytes, IPv4 mapped into IPv6
//! (`::ffff:a.b.c.d`), so one key layout serves both families.

use std::net::{IpAddr, Ipv6Addr};

pub(crate) fn addr16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The inverse of [`addr16`].
pub(crate) fn ip_of16(a: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_round_trip_and_ipv4_is_mapped() {
        for ip in ["10.1.2.3", "fd00::1", "::1", "0.0.0.0"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_of16(addr16(ip)), ip);
        }
        let v4 = addr16("10.1.2.3".parse().unwrap());
        assert_eq!(&v4[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    }
}

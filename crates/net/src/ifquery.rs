//! Interface facts by `ioctl` on a datagram socket of one namespace: index, up, primary
//! IPv4 address, hardware address. What a pod's ADD asks about a link costs a few microseconds this way; a
//! netlink request answers with the whole link message (statistics, per-family data),
//! which the kernel builds and the plugin parses, and an address question needs a dump.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A socket to ask about the interfaces of the namespace it was opened in.
#[derive(Debug)]
pub struct IfQuery(OwnedFd);

/// What a pod's ADD needs to know of a link by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Brief {
    pub index: u32,
    pub up: bool,
    /// The primary IPv4 address and its prefix length, if the link has one.
    pub ipv4: Option<(Ipv4Addr, u8)>,
}

impl IfQuery {
    /// A socket in the calling thread's network namespace.
    #[allow(unsafe_code)]
    pub fn open() -> std::io::Result<IfQuery> {
        // SAFETY: socket(2) takes no pointers; a non-negative result is a new descriptor.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a valid descriptor that nothing else owns.
        Ok(IfQuery(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The link's index, or `None` when no link has that name.
    pub fn index(&self, name: &str) -> std::io::Result<Option<u32>> {
        let Some(req) = self.ask(name, libc::SIOCGIFINDEX)? else {
            return Ok(None);
        };
        // SAFETY: SIOCGIFINDEX filled the union's ifindex member.
        #[allow(unsafe_code)]
        let index = unsafe { req.ifr_ifru.ifru_ifindex };
        Ok(u32::try_from(index).ok())
    }

    /// Index, up flag and primary IPv4 address of the link, or `None` when it does not
    /// exist.
    pub fn brief(&self, name: &str) -> std::io::Result<Option<Brief>> {
        let Some(index) = self.index(name)? else {
            return Ok(None);
        };
        let Some(req) = self.ask(name, libc::SIOCGIFFLAGS)? else {
            return Ok(None);
        };
        // SAFETY: SIOCGIFFLAGS filled the union's flags member.
        #[allow(unsafe_code)]
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        let up = flags & libc::IFF_UP as libc::c_short != 0;
        let ipv4 = match (
            self.ask_addr(name, libc::SIOCGIFADDR)?,
            self.ask_addr(name, libc::SIOCGIFNETMASK)?,
        ) {
            (Some(addr), Some(mask)) => Some((addr, u32::from(mask).count_ones() as u8)),
            _ => None,
        };
        Ok(Some(Brief { index, up, ipv4 }))
    }

    /// The link's hardware address, or `None` when it does not exist.
    pub fn mac(&self, name: &str) -> std::io::Result<Option<[u8; 6]>> {
        let Some(req) = self.ask(name, libc::SIOCGIFHWADDR)? else {
            return Ok(None);
        };
        // SAFETY: SIOCGIFHWADDR filled the union's hwaddr member.
        #[allow(unsafe_code)]
        let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
        let mut mac = [0u8; 6];
        for (m, d) in mac.iter_mut().zip(data.iter()) {
            *m = *d as u8;
        }
        Ok(Some(mac))
    }

    fn ask_addr(&self, name: &str, request: libc::Ioctl) -> std::io::Result<Option<Ipv4Addr>> {
        match self.ask(name, request) {
            Ok(Some(req)) => {
                // SAFETY: the address requests fill the union's sockaddr member, which for
                // an AF_INET socket holds a sockaddr_in (same size, compatible layout).
                #[allow(unsafe_code)]
                let sin: libc::sockaddr_in = unsafe {
                    std::ptr::read_unaligned(
                        std::ptr::addr_of!(req.ifr_ifru.ifru_addr).cast::<libc::sockaddr_in>(),
                    )
                };
                Ok(Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))))
            }
            Ok(None) => Ok(None),
            // A link without an IPv4 address.
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One `ioctl` about `name`; `None` when the link does not exist.
    fn ask(&self, name: &str, request: libc::Ioctl) -> std::io::Result<Option<libc::ifreq>> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            // No link can have this name.
            return Ok(None);
        }
        // SAFETY: ifreq is plain old data; all zeroes is a valid value.
        #[allow(unsafe_code)]
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
            *dst = *src as libc::c_char;
        }
        // SAFETY: `req` is a valid, NUL-terminated ifreq that outlives the call; these
        // requests only read the name and write the union.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), request, &mut req) };
        if rc == 0 {
            return Ok(Some(req));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENODEV) {
            return Ok(None);
        }
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_with_its_address_and_missing_links_are_none() {
        let q = IfQuery::open().unwrap();
        let lo = q.brief("lo").unwrap().expect("lo exists");
        assert_eq!(lo.index, 1);
        if lo.up {
            assert_eq!(lo.ipv4, Some((Ipv4Addr::LOCALHOST, 8)));
        }
        assert_eq!(q.mac("lo").unwrap(), Some([0; 6]));
        assert_eq!(q.index("nonexistent0").unwrap(), None);
        assert_eq!(q.brief("").unwrap(), None);
        assert_eq!(q.index("a-name-longer-than-ifnamsiz").unwrap(), None);
    }
}

//! Interface index ↔ name in the calling thread's network namespace (aya's tc API takes
//! names; the datapath knows indexes).

use std::ffi::CStr;

/// The name of interface `ifindex`, or None when no such interface exists here.
#[allow(unsafe_code)]
pub fn name_of(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires; the result is either
    // NULL or a pointer into buf holding a NUL-terminated name.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: p points into buf and is NUL-terminated (checked non-NULL above).
    let name = unsafe { CStr::from_ptr(p) };
    Some(name.to_string_lossy().into_owned())
}

/// The index of interface `name`, or None when no such interface exists here.
pub fn index_of(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

pub fn exists(ifindex: u32) -> bool {
    name_of(ifindex).is_some()
}

/// The hardware address of interface `ifindex` in the calling thread's network namespace.
#[allow(unsafe_code)]
pub fn mac_of(ifindex: u32) -> Option<[u8; 6]> {
    let name = name_of(ifindex)?;
    // SAFETY: plain socket(2); the descriptor is owned by `sock` below and closed on drop.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads ifr_name (NUL-terminated above, the struct was zeroed)
    // and writes ifr_hwaddr inside `req`, which lives across the call.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SIOCGIFHWADDR,
            &mut req,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: a successful SIOCGIFHWADDR filled the hwaddr member of the union.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data.iter()) {
        *m = *d as u8;
    }
    Some(mac)
}

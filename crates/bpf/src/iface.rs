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
pub fn mac_of(ifindex: u32) -> Option<[u8; 6]> {
    let name = name_of(ifindex)?;
    unicni_net::ifquery::IfQuery::open().ok()?.mac(&name).ok()?
}

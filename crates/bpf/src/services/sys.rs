//! The few bpf(2) commands aya 0.13 does not offer for cgroup programs: creating a
//! bpf_link we can pin (aya keeps cgroup links private), updating and detaching one, and
//! querying what is attached to a cgroup.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_DETACH: libc::c_long = 34;
const BPF_ENABLE_STATS: libc::c_long = 32;

/// `union bpf_attr` as bytes: every command's fields are a prefix of it and the kernel
/// wants the rest zero.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32_at(&mut self, off: usize, v: u32) -> &mut Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64_at(&mut self, off: usize, v: u64) -> &mut Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn get_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.0[off..off + 4].try_into().expect("4 bytes"))
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a zero-padded bpf_attr of the size we pass; pointers inside it
    // (paths, id buffers) are set by the callers to memory that outlives the call.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this new descriptor; nobody else owns it.
    #[allow(unsafe_code)]
    unsafe {
        OwnedFd::from_raw_fd(fd as i32)
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// BPF_LINK_CREATE of `prog` on the cgroup `cgroup` for `attach_type` (the kernel's
/// `enum bpf_attach_type`). Cgroup links always allow several programs per hook.
pub(crate) fn link_create(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: u32,
) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32_at(0, prog.as_raw_fd() as u32)
        .u32_at(4, cgroup.as_raw_fd() as u32)
        .u32_at(8, attach_type);
    bpf(BPF_LINK_CREATE, &mut a).map(owned)
}

/// BPF_LINK_UPDATE: the link runs `prog` from now on, atomically.
pub(crate) fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut a = Attr::new();
    a.u32_at(0, link.as_raw_fd() as u32)
        .u32_at(4, prog.as_raw_fd() as u32);
    bpf(BPF_LINK_UPDATE, &mut a).map(|_| ())
}

/// BPF_LINK_DETACH: detaches the link even while pins or descriptors still hold it.
pub(crate) fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut a = Attr::new();
    a.u32_at(0, link.as_raw_fd() as u32);
    bpf(BPF_LINK_DETACH, &mut a).map(|_| ())
}

pub(crate) fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let p = c_path(path)?;
    let mut a = Attr::new();
    a.u64_at(0, p.as_ptr() as u64)
        .u32_at(8, fd.as_raw_fd() as u32);
    bpf(BPF_OBJ_PIN, &mut a).map(|_| ())
}

pub(crate) fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let p = c_path(path)?;
    let mut a = Attr::new();
    a.u64_at(0, p.as_ptr() as u64);
    bpf(BPF_OBJ_GET, &mut a).map(owned)
}

/// BPF_PROG_QUERY: the ids of the programs attached to `cgroup` at `attach_type` (links
/// and plain attachments alike).
pub(crate) fn prog_query(cgroup: BorrowedFd<'_>, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut cap = 64usize;
    loop {
        let mut ids = vec![0u32; cap];
        let mut a = Attr::new();
        a.u32_at(0, cgroup.as_raw_fd() as u32)
            .u32_at(4, attach_type)
            .u64_at(16, ids.as_mut_ptr() as u64)
            .u32_at(24, cap as u32);
        match bpf(BPF_PROG_QUERY, &mut a) {
            Ok(_) => {
                let n = a.get_u32(24) as usize;
                ids.truncate(n.min(cap));
                return Ok(ids);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => cap *= 4,
            Err(e) => return Err(e),
        }
    }
}

/// SO_NETNS_COOKIE from <asm-generic/socket.h> (libc does not export it on every target).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the network namespace a socket lives in.
pub(crate) fn socket_netns_cookie(sock: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`, which is a u64.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): the kernel counts run time and runs of every
/// program while the returned descriptor is open.
pub(crate) fn enable_run_time_stats() -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32_at(0, 0);
    bpf(BPF_ENABLE_STATS, &mut a).map(owned)
}

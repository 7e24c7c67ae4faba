//! The eBPF objects compiled by build.rs from `bpf/*.c`.

/// The same-node fast path (`bpf/fastpath.c`).
pub static FASTPATH: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fastpath.o"));

/// A program every verifier refuses (`bpf/reject.c`); only for tests of the error path.
#[doc(hidden)]
pub static REJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reject.o"));

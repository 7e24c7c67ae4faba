//! The eBPF objects compiled by build.rs from `bpf/*.c`.

/// The same-node fast path (`bpf/fastpath.c`).
pub static FASTPATH: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fastpath.o"));

/// A program every verifier refuses (`bpf/reject.c`); only for tests of the error path.
#[doc(hidden)]
pub static REJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reject.o"));

/// The fast path built with `-mcpu=v3`: same behaviour, different instructions (tag), to
/// test switching attachments to a changed program.
#[doc(hidden)]
pub static FASTPATH_V3: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fastpath_v3.o"));

/// NetworkPolicy enforcement (`bpf/policy.c`).
pub static POLICY: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/policy.o"));

/// The policy programs built with `-mcpu=v3` (tests of an upgrade in place).
#[doc(hidden)]
pub static POLICY_V3: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/policy_v3.o"));

/// The terway shared-ENI fast path (`bpf/terway.c`).
pub static TERWAY: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/terway.o"));

/// The terway fast path built with `-mcpu=v3` (tests of an upgrade in place).
#[doc(hidden)]
pub static TERWAY_V3: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/terway_v3.o"));

/// The Service load balancer's cgroup programs (`bpf/services.c`).
pub static SERVICES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/services.o"));

/// The Service programs built with `-mcpu=v3` (tests of an upgrade in place).
#[doc(hidden)]
pub static SERVICES_V3: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/services_v3.o"));

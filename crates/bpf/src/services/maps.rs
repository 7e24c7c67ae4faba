//! Rust mirrors of the map layouts in `bpf/services.h`.

pub const PODS: &str = "svc_pods";
pub const FRONTENDS: &str = "svc_frontends";
pub const SLOTS: &str = "svc_slots";
pub const BACKENDS: &str = "svc_backends";
pub const STATS: &str = "svc_stats";

/// `struct svc_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub addr: [u8; 16],
    pub port: u16,
    pub proto: u8,
    pub pad: u8,
}
// SAFETY: repr(C), integer fields only, no padding (16 + 2 + 1 + 1 bytes).
#[allow(unsafe_code)]
unsafe impl aya::Pod for Key {}

/// `struct svc_value`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Value {
    pub id: u32,
    pub count: u32,
    pub affinity_sec: u32,
    pub flags: u32,
}
// SAFETY: repr(C), four u32, no padding.
#[allow(unsafe_code)]
unsafe impl aya::Pod for Value {}

/// `struct svc_slot_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SlotKey {
    pub id: u32,
    pub slot: u32,
}
// SAFETY: repr(C), two u32, no padding.
#[allow(unsafe_code)]
unsafe impl aya::Pod for SlotKey {}

pub(crate) const BACKEND_TERMINATING: u8 = 1;

/// `struct svc_backend`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackendValue {
    pub addr: [u8; 16],
    pub port: u16,
    pub flags: u8,
    pub pad: u8,
    pub svc_id: u32,
}
// SAFETY: repr(C), integer fields only, no padding (16 + 2 + 1 + 1 + 4 bytes).
#[allow(unsafe_code)]
unsafe impl aya::Pod for BackendValue {}

pub(crate) use crate::addr::{addr16, ip_of16};

/// Ports in the maps are in network byte order, read as a native u16.
pub(crate) fn port_key(port: u16) -> u16 {
    u16::from_ne_bytes(port.to_be_bytes())
}

pub(crate) fn port_of(key: u16) -> u16 {
    u16::from_be_bytes(key.to_ne_bytes())
}

/// Slots of `svc_stats` (enum svc_stat).
pub(crate) const STAT_CONNECT: u32 = 0;
pub(crate) const STAT_SENDMSG: u32 = 1;
pub(crate) const STAT_NO_BACKEND: u32 = 2;
pub(crate) const STAT_REV: u32 = 3;
pub(crate) const STAT_AFFINITY: u32 = 4;
pub(crate) const STAT_UDP_FLOW: u32 = 5;

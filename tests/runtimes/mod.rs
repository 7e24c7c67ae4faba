//! Harness for the real-runtime tests (`tests/runtime_*.rs`) and the CRI bench: private
//! containerd and podman instances, hand-made images, the network under test, and Drop
//! guards that leave the host as they found it.
//!
//! Each test binary uses only part of it.
#![allow(dead_code)]

pub mod cniexec;
pub mod containerd;
pub mod cri;
pub mod env;
pub mod guard;
pub mod image;
pub mod kubelet;
pub mod netns;
pub mod network;
pub mod podman;
pub mod util;

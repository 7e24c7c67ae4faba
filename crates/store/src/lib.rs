//! Cluster store implementations behind [`unicni_core::Store`].

pub mod file;

pub use file::FileStore;

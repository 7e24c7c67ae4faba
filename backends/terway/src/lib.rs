//! The terway backend: pods take addresses straight from the VPC through elastic network
//! interfaces. The agent owns the ENI pool and answers the plugin over a unix socket
//! ([`proto`]); the plugin wires the pod ([`datapath`]).

pub mod backend;
pub mod client;
pub mod datapath;
pub mod node;
pub mod podinfo;
pub mod pool;
pub mod proto;
pub mod server;
pub mod state;

pub use backend::{TerwayBackend, TerwayNetConf};
pub mod agent;

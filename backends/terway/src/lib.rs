//! The terway backend: pods take addresses straight from the VPC through elastic network
//! interfaces. The agent owns the ENI pool and answers the plugin over a unix socket
//! ([`proto`]); the plugin wires the pod ([`datapath`]).

pub mod datapath;
pub mod proto;

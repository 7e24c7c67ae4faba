//! One module per subcommand.

pub mod agent;
pub mod assess;
pub mod cloud_sim;
pub mod cni;
pub mod common;
pub mod config;
pub mod install;
pub mod kube_sim;
pub mod lab;
pub mod lock;
pub mod manifests;
pub mod plan;
pub mod uninstall;

//! An emulator of the Alibaba Cloud ECS/VPC RPC API and of the instance metadata
//! service, for `unicni lab` and the contract tests of `unicni-cloud`.
//!
//! It verifies signatures (V3 `ACS3-HMAC-SHA256` and V2 HMAC-SHA1), answers with the
//! vendor's JSON documents and error codes, runs the asynchronous state machines (ENI
//! attach/detach/delete, route entry creation/deletion) on configurable delays or a
//! latency profile ([`latency`]), logs the requests it serves, enforces
//! instance-type ENI limits, vSwitch address space and the route-table quota, injects
//! faults, persists its state, and publishes a [`SimEvent`] for every change so the lab
//! can mirror ENIs and routes into network namespaces ([`materialize`], [`mirror`]).

pub mod api;
pub mod auth;
pub mod config;
pub mod eni;
pub mod error;
pub mod events;
pub mod faults;
pub mod instance_types;
pub mod latency;
pub mod materialize;
pub mod metadata;
pub mod mirror;
mod pager;
pub mod params;
pub mod persist;
pub mod route_table;
pub mod server;
pub mod state;
pub mod vpc;

pub use config::{AccessKey, InstanceSpec, SimConfig, VSwitchSpec};
pub use error::{ApiError, SimError};
pub use events::SimEvent;
pub use faults::{FaultConfig, FaultSpec};
pub use latency::Profile;
pub use server::{CloudSim, RequestRecord, RunningSim};
pub use state::State;

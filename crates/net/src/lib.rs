//! Kernel mechanisms every backend shares: network namespaces, netlink (links,
//! addresses, routes), sysctls and nftables.
//!
//! Namespace rule: a thread never `setns`es on a tokio worker. To talk netlink inside a
//! pod's namespace, [`Netlink::in_netns`] enters it on a short-lived dedicated
//! thread, opens the socket there (a netlink socket stays bound to the namespace it was
//! created in) and hands the socket back.

pub mod error;
pub mod events;
pub mod ifquery;
pub mod links;
pub mod names;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod overlay;
pub mod routes;
pub mod rules;
pub mod sysctl;
pub mod vswitch;

pub use error::{NetError, Result};
pub use ifquery::Brief;
pub use netlink::{LinkInfo, Netlink, VethSpec};
pub use netns::NetNs;
pub use routes::{Neighbour, Route, Scope, TABLE_MAIN};
pub use rules::Rule;

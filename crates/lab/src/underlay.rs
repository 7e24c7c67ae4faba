//! The simulated VPC: one namespace with a bridge (the VPC's L2 segment; its address is
//! the VPC router and an outside host), one namespace per node plugged into it, and the
//! VPC host: a namespace on a subnet of its own behind the VPC router.

use super::topology::{in_ns, sh, Lab, HOST_LEN, VPC_LEN};

/// The VPC bridge's MAC (locally administered, from 192.168.250.1).
const BR0_MAC: &str = "02:00:c0:a8:fa:01";
use anyhow::Result;

impl Lab {
    pub fn create_vpc(&self) -> Result<()> {
        let vpc = self.vpc_ns();
        sh(&["ip", "netns", "add", &vpc])?;
        in_ns(&vpc, &["ip", "link", "set", "lo", "up"])?;
        // A fixed MAC: a bridge otherwise takes the lowest MAC of its ports, and every
        // change of its address flushes its neighbour table, permanent entries too (the
        // ENI addresses the emulator routes to their ENI's MAC).
        in_ns(
            &vpc,
            &[
                "ip", "link", "add", "br0", "address", BR0_MAC, "type", "bridge",
            ],
        )?;
        in_ns(
            &vpc,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/{VPC_LEN}", self.outside_ip()),
                "dev",
                "br0",
            ],
        )?;
        in_ns(&vpc, &["ip", "link", "set", "br0", "up"])?;
        // The VPC router routes between its subnets (the nodes', the VPC host's, pods').
        in_ns(&vpc, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        Ok(())
    }

    /// The VPC host: another machine of the VPC on a subnet of its own (a load balancer,
    /// another ECS instance), routed to the rest of the VPC by the VPC router.
    pub fn create_host(&self) -> Result<()> {
        let vpc = self.vpc_ns();
        let ns = self.host_ns();
        sh(&["ip", "netns", "add", &ns])?;
        in_ns(&ns, &["ip", "link", "set", "lo", "up"])?;
        in_ns(
            &vpc,
            &[
                "ip", "link", "add", "host", "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        let router = format!("{}/{HOST_LEN}", self.host_router_ip());
        in_ns(&vpc, &["ip", "addr", "add", &router, "dev", "host"])?;
        in_ns(&vpc, &["ip", "link", "set", "host", "up"])?;
        let me = format!("{}/{HOST_LEN}", self.host_ip());
        in_ns(&ns, &["ip", "addr", "add", &me, "dev", "eth0"])?;
        in_ns(&ns, &["ip", "link", "set", "eth0", "up"])?;
        in_ns(
            &ns,
            &[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &self.host_router_ip(),
            ],
        )?;
        Ok(())
    }

    /// Node `i`: a namespace whose `eth0` sits on the VPC bridge, default route via the
    /// VPC router. Like the real VPC, which knows the MAC of every instance's primary ENI,
    /// the router's neighbour entry for the node is permanent: the node's other ENIs share
    /// the segment and would otherwise answer its ARP requests too (and get its traffic).
    pub fn create_node(&self, i: usize) -> Result<()> {
        let vpc = self.vpc_ns();
        let ns = self.node_ns(i);
        sh(&["ip", "netns", "add", &ns])?;
        in_ns(&ns, &["ip", "link", "set", "lo", "up"])?;
        let host = self.node_tag(i);
        // Locally administered, the last byte is the node address's.
        let mac = format!("02:00:c0:a8:fa:{:02x}", 10 + i);
        in_ns(
            &vpc,
            &[
                "ip", "link", "add", &host, "type", "veth", "peer", "name", "eth0", "address",
                &mac, "netns", &ns,
            ],
        )?;
        in_ns(
            &vpc,
            &[
                "ip",
                "neigh",
                "replace",
                &self.node_ip(i),
                "lladdr",
                &mac,
                "dev",
                "br0",
                "nud",
                "permanent",
            ],
        )?;
        in_ns(&vpc, &["ip", "link", "set", &host, "master", "br0", "up"])?;
        in_ns(
            &ns,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/{VPC_LEN}", self.node_ip(i)),
                "dev",
                "eth0",
            ],
        )?;
        in_ns(&ns, &["ip", "link", "set", "eth0", "up"])?;
        in_ns(
            &ns,
            &["ip", "route", "add", "default", "via", &self.outside_ip()],
        )?;
        Ok(())
    }
}

impl Lab {
    /// Dual-stack flannel labs: the VPC segment carries IPv6 too (the router `::1` on its
    /// bridge, node `i` on its `eth0`, default route via the router), so pods' IPv6
    /// traffic leaving the cluster has somewhere to go and host-gw a global next hop.
    /// Idempotent; no duplicate address detection (the lab owns the segment).
    pub fn add_node_ipv6(&self, i: usize) -> Result<()> {
        let vpc = self.vpc_ns();
        let ns = self.node_ns(i);
        let router = format!("{}/64", self.outside_ip6());
        in_ns(
            &vpc,
            &[
                "ip", "-6", "addr", "replace", &router, "dev", "br0", "nodad",
            ],
        )?;
        let me = format!("{}/64", self.node_ip6(i));
        in_ns(
            &ns,
            &["ip", "-6", "addr", "replace", &me, "dev", "eth0", "nodad"],
        )?;
        in_ns(
            &ns,
            &[
                "ip",
                "-6",
                "route",
                "replace",
                "default",
                "via",
                &self.outside_ip6(),
            ],
        )?;
        Ok(())
    }
}

//! The `Cloud` interface: what the terway backend and the flannel vpc-route mode need from
//! a cloud. `AlibabaCloud` implements it against the real OpenAPI (or the emulator, which
//! speaks the same wire protocol); tests may implement it in memory.

use crate::error::Result;
use crate::types::*;
use async_trait::async_trait;
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

#[async_trait]
pub trait Cloud: Send + Sync {
    /// ECS CreateNetworkInterface. The ENI is `Available` (not attached) on success.
    async fn create_network_interface(&self, req: &CreateEniRequest) -> Result<NetworkInterface>;
    /// ECS AttachNetworkInterface. Returns once the API accepted it; the ENI is
    /// `Attaching` until the cloud finishes: see [`crate::poll::wait_eni_status`].
    async fn attach_network_interface(&self, eni_id: &str, instance_id: &str) -> Result<()>;
    /// ECS DetachNetworkInterface; the ENI goes `Detaching` then `Available`.
    async fn detach_network_interface(&self, eni_id: &str, instance_id: &str) -> Result<()>;
    /// ECS DeleteNetworkInterface; the ENI must be `Available`. Returns once the API
    /// accepted it; the ENI is `Deleting` until the cloud removes it: see
    /// [`crate::poll::wait_eni_deleted`].
    async fn delete_network_interface(&self, eni_id: &str) -> Result<()>;
    /// ECS DescribeNetworkInterfaces, every page (MaxResults/NextToken, 500 a page).
    async fn describe_network_interfaces(
        &self,
        filter: &EniFilter,
    ) -> Result<Vec<NetworkInterface>>;
    /// ECS AssignPrivateIpAddresses; returns the addresses assigned.
    async fn assign_private_ip_addresses(
        &self,
        eni_id: &str,
        req: IpRequest<Ipv4Addr>,
    ) -> Result<Vec<Ipv4Addr>>;
    async fn unassign_private_ip_addresses(&self, eni_id: &str, ips: &[Ipv4Addr]) -> Result<()>;
    async fn assign_ipv6_addresses(
        &self,
        eni_id: &str,
        req: IpRequest<Ipv6Addr>,
    ) -> Result<Vec<Ipv6Addr>>;
    async fn unassign_ipv6_addresses(&self, eni_id: &str, ips: &[Ipv6Addr]) -> Result<()>;
    /// ECS AssignPrivateIpAddresses with `Ipv4PrefixCount` (1–10): `count` /28 prefixes
    /// delegated to the ENI, each one of its IPv4 slots; returns them.
    async fn assign_ipv4_prefixes(&self, eni_id: &str, count: u32) -> Result<Vec<Ipv4Net>>;
    /// ECS UnassignPrivateIpAddresses with `Ipv4Prefix.N`.
    async fn unassign_ipv4_prefixes(&self, eni_id: &str, prefixes: &[Ipv4Net]) -> Result<()>;
    /// ECS AssignIpv6Addresses with `Ipv6PrefixCount`: /80 prefixes; returns them.
    async fn assign_ipv6_prefixes(&self, eni_id: &str, count: u32) -> Result<Vec<Ipv6Net>>;
    /// ECS UnassignIpv6Addresses with `Ipv6Prefix.N`.
    async fn unassign_ipv6_prefixes(&self, eni_id: &str, prefixes: &[Ipv6Net]) -> Result<()>;
    /// ECS DescribeInstanceTypes for the given types (all types when empty), every page.
    async fn describe_instance_types(&self, types: &[String]) -> Result<Vec<InstanceTypeLimits>>;
    /// VPC DescribeVSwitches by ID, or every vSwitch of `vpc_id` when `ids` is empty.
    async fn describe_vswitches(
        &self,
        vpc_id: Option<&str>,
        ids: &[String],
    ) -> Result<Vec<VSwitch>>;
    /// VPC DescribeRouteTableList of a VPC, every page.
    async fn describe_route_tables(&self, vpc_id: &str) -> Result<Vec<RouteTable>>;
    /// VPC DescribeRouteEntryList of a route table, every page.
    async fn describe_route_entries(&self, route_table_id: &str) -> Result<Vec<RouteEntry>>;
    /// VPC CreateRouteEntry; returns the entry ID. The entry is `Pending` at first: see
    /// [`crate::poll::wait_route_entry_available`].
    async fn create_route_entry(&self, req: &CreateRouteEntryRequest) -> Result<String>;
    /// VPC DeleteRouteEntry, by its ID.
    async fn delete_route_entry(&self, route_table_id: &str, route_entry_id: &str) -> Result<()>;
}

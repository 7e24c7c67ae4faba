//! The RPC API: which action runs for which `Version`/`Action`, and ClientToken replay.

use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::state::State;
use serde_json::Value;
use unicni_cloud::client::{ECS_VERSION, VPC_VERSION};

/// Actions whose ClientToken makes a retry return the first result.
const IDEMPOTENT: &[&str] = &[
    "CreateNetworkInterface",
    "AssignPrivateIpAddresses",
    "AssignIpv6Addresses",
    "CreateRouteEntry",
];

pub fn dispatch(state: &mut State, p: &Params) -> ApiResult<Value> {
    let action = p.req("Action")?.to_string();
    let version = p.req("Version")?.to_string();
    if let Some(r) = p.get("RegionId") {
        if r != state.region {
            return Err(ApiError::new(
                404,
                "InvalidRegionId.NotFound",
                format!("The region {r} does not exist here."),
            ));
        }
    }
    let token_key = p
        .get("ClientToken")
        .filter(|_| IDEMPOTENT.contains(&action.as_str()))
        .map(|t| format!("{action}/{t}"));
    if let Some(k) = &token_key {
        if let Some(v) = state.client_tokens.get(k) {
            return Ok(v.clone());
        }
    }
    let result = match (version.as_str(), action.as_str()) {
        (ECS_VERSION, "CreateNetworkInterface") => state.create_network_interface(p),
        (ECS_VERSION, "AttachNetworkInterface") => state.attach_network_interface(p),
        (ECS_VERSION, "DetachNetworkInterface") => state.detach_network_interface(p),
        (ECS_VERSION, "DeleteNetworkInterface") => state.delete_network_interface(p),
        (ECS_VERSION, "DescribeNetworkInterfaces") => state.describe_network_interfaces(p),
        (ECS_VERSION, "AssignPrivateIpAddresses") => state.assign_private_ip_addresses(p),
        (ECS_VERSION, "UnassignPrivateIpAddresses") => state.unassign_private_ip_addresses(p),
        (ECS_VERSION, "AssignIpv6Addresses") => state.assign_ipv6_addresses(p),
        (ECS_VERSION, "UnassignIpv6Addresses") => state.unassign_ipv6_addresses(p),
        (ECS_VERSION, "DescribeInstanceTypes") => state.describe_instance_types(p),
        (VPC_VERSION, "DescribeVSwitches") => state.describe_vswitches(p),
        (VPC_VERSION, "DescribeRouteTableList") => state.describe_route_table_list(p),
        (VPC_VERSION, "DescribeRouteEntryList") => state.describe_route_entry_list(p),
        (VPC_VERSION, "CreateRouteEntry") => state.create_route_entry(p),
        (VPC_VERSION, "DeleteRouteEntry") => state.delete_route_entry(p),
        _ => Err(ApiError::new(
            404,
            "InvalidAction.NotFound",
            format!("Specified api {action} is not found for version {version}, please check your url and method."),
        )),
    }?;
    if let Some(k) = token_key {
        state.client_tokens.insert(k, result.clone());
    }
    Ok(result)
}

/// Whether the action changes state (and so the state file must be written).
pub fn mutates(action: &str) -> bool {
    !action.starts_with("Describe")
}

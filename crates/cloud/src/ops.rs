//! `Cloud` for `AlibabaCloud`: each method is one API action (plus its pagination).

use crate::api::Cloud;
use crate::client::{AlibabaCloud, Params, Service};
use crate::error::{CloudError, Result};
use crate::types::*;
use crate::wire::{self, list, str_of, u64_of};
use async_trait::async_trait;
use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::Value;
use std::net::{Ipv4Addr, Ipv6Addr};

/// MaxResults of DescribeNetworkInterfaces: the vendor's maximum (10..=500), as the
/// anchor asks for.
const ENI_PAGE_SIZE: u32 = 500;

fn p(k: impl Into<String>, v: impl ToString) -> (String, String) {
    (k.into(), v.to_string())
}

fn token(t: &Option<String>) -> String {
    t.clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn push_tags(params: &mut Params, tags: &[(String, String)]) {
    for (i, (k, v)) in tags.iter().enumerate() {
        params.push(p(format!("Tag.{}.Key", i + 1), k));
        params.push(p(format!("Tag.{}.Value", i + 1), v));
    }
}

impl AlibabaCloud {
    /// Pages with PageNumber/PageSize until TotalCount items (or an empty page) are read.
    async fn paged(
        &self,
        service: Service,
        action: &str,
        params: Params,
        outer: &str,
        inner: &str,
    ) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut page = 1u64;
        loop {
            let mut req = params.clone();
            req.push(p("PageNumber", page));
            req.push(p("PageSize", self.opts.page_size));
            let doc = self.call(service, action, req).await?;
            let items = list(&doc, outer, inner);
            out.extend(items.iter().cloned());
            let total = u64_of(&doc, "TotalCount");
            if items.is_empty() || out.len() as u64 >= total {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// Pages with NextToken until the service returns none (or an empty one).
    #[allow(clippy::too_many_arguments)]
    async fn tokened(
        &self,
        service: Service,
        action: &str,
        params: Params,
        size_param: &str,
        size: u32,
        outer: &str,
        inner: &str,
    ) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut next = String::new();
        loop {
            let mut req = params.clone();
            req.push(p(size_param, size));
            if !next.is_empty() {
                req.push(p("NextToken", &next));
            }
            let doc = self.call(service, action, req).await?;
            out.extend(list(&doc, outer, inner).iter().cloned());
            let prev = std::mem::replace(&mut next, str_of(&doc, "NextToken"));
            if next.is_empty() {
                return Ok(out);
            }
            // A service handing back the token it was given would never end the loop.
            if next == prev {
                return Err(CloudError::Decode {
                    action: action.to_string(),
                    reason: format!("NextToken {next:?} did not advance"),
                });
            }
        }
    }
}

#[async_trait]
impl Cloud for AlibabaCloud {
    async fn create_network_interface(&self, req: &CreateEniRequest) -> Result<NetworkInterface> {
        let mut params = vec![
            p("VSwitchId", &req.vswitch_id),
            p("ClientToken", token(&req.client_token)),
        ];
        for (i, sg) in req.security_group_ids.iter().enumerate() {
            params.push(p(format!("SecurityGroupIds.{}", i + 1), sg));
        }
        if req.secondary_ip_count > 0 {
            params.push(p("SecondaryPrivateIpAddressCount", req.secondary_ip_count));
        }
        if req.ipv6_count > 0 {
            params.push(p("Ipv6AddressCount", req.ipv6_count));
        }
        // "ECS API CreateNetworkInterface": Ipv4PrefixCount / Ipv6PrefixCount delegate
        // prefixes at creation, saving the AssignPrivateIpAddresses call after it.
        if req.ipv4_prefix_count > 0 {
            params.push(p("Ipv4PrefixCount", req.ipv4_prefix_count));
        }
        if req.ipv6_prefix_count > 0 {
            params.push(p("Ipv6PrefixCount", req.ipv6_prefix_count));
        }
        if let Some(d) = &req.description {
            params.push(p("Description", d));
        }
        push_tags(&mut params, &req.tags);
        let doc = self
            .call(Service::Ecs, "CreateNetworkInterface", params)
            .await?;
        wire::eni("CreateNetworkInterface", &doc)
    }

    async fn attach_network_interface(&self, eni_id: &str, instance_id: &str) -> Result<()> {
        let params = vec![
            p("NetworkInterfaceId", eni_id),
            p("InstanceId", instance_id),
        ];
        self.call(Service::Ecs, "AttachNetworkInterface", params)
            .await
            .map(drop)
    }

    async fn detach_network_interface(&self, eni_id: &str, instance_id: &str) -> Result<()> {
        let params = vec![
            p("NetworkInterfaceId", eni_id),
            p("InstanceId", instance_id),
        ];
        self.call(Service::Ecs, "DetachNetworkInterface", params)
            .await
            .map(drop)
    }

    async fn delete_network_interface(&self, eni_id: &str) -> Result<()> {
        self.call(
            Service::Ecs,
            "DeleteNetworkInterface",
            vec![p("NetworkInterfaceId", eni_id)],
        )
        .await
        .map(drop)
    }

    async fn describe_network_interfaces(&self, f: &EniFilter) -> Result<Vec<NetworkInterface>> {
        let mut params = Params::new();
        for (i, id) in f.ids.iter().enumerate() {
            params.push(p(format!("NetworkInterfaceId.{}", i + 1), id));
        }
        if let Some(v) = &f.instance_id {
            params.push(p("InstanceId", v));
        }
        if let Some(v) = &f.vswitch_id {
            params.push(p("VSwitchId", v));
        }
        if let Some(v) = &f.vpc_id {
            params.push(p("VpcId", v));
        }
        if let Some(s) = f.status {
            params.push(p("Status", s.as_str()));
        }
        push_tags(&mut params, &f.tags);
        // MaxResults/NextToken is the style the vendor recommends (PageNumber/PageSize
        // is marked for removal in its DescribeNetworkInterfaces reference); 500 is the
        // largest MaxResults it takes.
        let items = self
            .tokened(
                Service::Ecs,
                "DescribeNetworkInterfaces",
                params,
                "MaxResults",
                ENI_PAGE_SIZE,
                "NetworkInterfaceSets",
                "NetworkInterfaceSet",
            )
            .await?;
        items
            .iter()
            .map(|v| wire::eni("DescribeNetworkInterfaces", v))
            .collect()
    }

    async fn assign_private_ip_addresses(
        &self,
        eni_id: &str,
        req: IpRequest<Ipv4Addr>,
    ) -> Result<Vec<Ipv4Addr>> {
        const A: &str = "AssignPrivateIpAddresses";
        let mut params = vec![
            p("NetworkInterfaceId", eni_id),
            p("ClientToken", token(&None)),
        ];
        match &req {
            IpRequest::Count(n) => params.push(p("SecondaryPrivateIpAddressCount", n)),
            IpRequest::Exact(ips) => {
                for (i, ip) in ips.iter().enumerate() {
                    params.push(p(format!("PrivateIpAddress.{}", i + 1), ip));
                }
            }
        }
        let doc = self.call(Service::Ecs, A, params).await?;
        let set = doc
            .get("AssignedPrivateIpAddressesSet")
            .unwrap_or(&Value::Null);
        let ips = set
            .get("PrivateIpSet")
            .and_then(|s| s.get("PrivateIpAddress"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        ips.iter()
            .map(|v| wire::parse_ip(A, "PrivateIpAddress", v.as_str().unwrap_or("")))
            .collect()
    }

    async fn unassign_private_ip_addresses(&self, eni_id: &str, ips: &[Ipv4Addr]) -> Result<()> {
        let mut params = vec![p("NetworkInterfaceId", eni_id)];
        for (i, ip) in ips.iter().enumerate() {
            params.push(p(format!("PrivateIpAddress.{}", i + 1), ip));
        }
        self.call(Service::Ecs, "UnassignPrivateIpAddresses", params)
            .await
            .map(drop)
    }

    async fn assign_ipv6_addresses(
        &self,
        eni_id: &str,
        req: IpRequest<Ipv6Addr>,
    ) -> Result<Vec<Ipv6Addr>> {
        const A: &str = "AssignIpv6Addresses";
        let mut params = vec![
            p("NetworkInterfaceId", eni_id),
            p("ClientToken", token(&None)),
        ];
        match &req {
            IpRequest::Count(n) => params.push(p("Ipv6AddressCount", n)),
            IpRequest::Exact(ips) => {
                for (i, ip) in ips.iter().enumerate() {
                    params.push(p(format!("Ipv6Address.{}", i + 1), ip));
                }
            }
        }
        let doc = self.call(Service::Ecs, A, params).await?;
        list(&doc, "Ipv6Sets", "Ipv6Address")
            .iter()
            .map(|v| wire::parse_ip(A, "Ipv6Address", v.as_str().unwrap_or("")))
            .collect()
    }

    async fn unassign_ipv6_addresses(&self, eni_id: &str, ips: &[Ipv6Addr]) -> Result<()> {
        let mut params = vec![p("NetworkInterfaceId", eni_id)];
        for (i, ip) in ips.iter().enumerate() {
            params.push(p(format!("Ipv6Address.{}", i + 1), ip));
        }
        self.call(Service::Ecs, "UnassignIpv6Addresses", params)
            .await
            .map(drop)
    }

    async fn assign_ipv4_prefixes(&self, eni_id: &str, count: u32) -> Result<Vec<Ipv4Net>> {
        const A: &str = "AssignPrivateIpAddresses";
        // "ECS API AssignPrivateIpAddresses": Ipv4PrefixCount (1–10) instead of
        // SecondaryPrivateIpAddressCount; the response lists the prefixes under
        // AssignedPrivateIpAddressesSet.Ipv4PrefixSet.Ipv4Prefixes.
        let params = vec![
            p("NetworkInterfaceId", eni_id),
            p("Ipv4PrefixCount", count),
            p("ClientToken", token(&None)),
        ];
        let doc = self.call(Service::Ecs, A, params).await?;
        let got = doc
            .get("AssignedPrivateIpAddressesSet")
            .and_then(|s| s.get("Ipv4PrefixSet"))
            .and_then(|s| s.get("Ipv4Prefixes"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        got.iter()
            .map(|v| wire::parse_ip(A, "Ipv4Prefixes entry", v.as_str().unwrap_or("")))
            .collect()
    }

    async fn unassign_ipv4_prefixes(&self, eni_id: &str, prefixes: &[Ipv4Net]) -> Result<()> {
        // "ECS API UnassignPrivateIpAddresses": Ipv4Prefix.N.
        let mut params = vec![p("NetworkInterfaceId", eni_id)];
        for (i, n) in prefixes.iter().enumerate() {
            params.push(p(format!("Ipv4Prefix.{}", i + 1), n));
        }
        self.call(Service::Ecs, "UnassignPrivateIpAddresses", params)
            .await
            .map(drop)
    }

    async fn assign_ipv6_prefixes(&self, eni_id: &str, count: u32) -> Result<Vec<Ipv6Net>> {
        const A: &str = "AssignIpv6Addresses";
        // "ECS API AssignIpv6Addresses": Ipv6PrefixCount; the response's
        // Ipv6PrefixSets.Ipv6Prefix lists them.
        let params = vec![
            p("NetworkInterfaceId", eni_id),
            p("Ipv6PrefixCount", count),
            p("ClientToken", token(&None)),
        ];
        let doc = self.call(Service::Ecs, A, params).await?;
        list(&doc, "Ipv6PrefixSets", "Ipv6Prefix")
            .iter()
            .map(|v| wire::parse_ip(A, "Ipv6Prefix entry", v.as_str().unwrap_or("")))
            .collect()
    }

    async fn unassign_ipv6_prefixes(&self, eni_id: &str, prefixes: &[Ipv6Net]) -> Result<()> {
        // "ECS API UnassignIpv6Addresses": Ipv6Prefix.N.
        let mut params = vec![p("NetworkInterfaceId", eni_id)];
        for (i, n) in prefixes.iter().enumerate() {
            params.push(p(format!("Ipv6Prefix.{}", i + 1), n));
        }
        self.call(Service::Ecs, "UnassignIpv6Addresses", params)
            .await
            .map(drop)
    }

    async fn describe_instance_types(&self, types: &[String]) -> Result<Vec<InstanceTypeLimits>> {
        let mut params = Params::new();
        for (i, t) in types.iter().enumerate() {
            params.push(p(format!("InstanceTypes.{}", i + 1), t));
        }
        let items = self
            .tokened(
                Service::Ecs,
                "DescribeInstanceTypes",
                params,
                "MaxResults",
                self.opts.page_size,
                "InstanceTypes",
                "InstanceType",
            )
            .await?;
        Ok(items.iter().map(wire::instance_type).collect())
    }

    async fn describe_vswitches(
        &self,
        vpc_id: Option<&str>,
        ids: &[String],
    ) -> Result<Vec<VSwitch>> {
        let mut base = Params::new();
        if let Some(v) = vpc_id {
            base.push(p("VpcId", v));
        }
        let mut out = Vec::new();
        if ids.is_empty() {
            if vpc_id.is_none() {
                return Err(CloudError::InvalidRequest(
                    "DescribeVSwitches needs a VPC ID or vSwitch IDs".into(),
                ));
            }
            for v in self
                .paged(
                    Service::Vpc,
                    "DescribeVSwitches",
                    base,
                    "VSwitches",
                    "VSwitch",
                )
                .await?
            {
                out.push(wire::vswitch(&v));
            }
        } else {
            // The API filters by one VSwitchId per call.
            for id in ids {
                let mut params = base.clone();
                params.push(p("VSwitchId", id));
                for v in self
                    .paged(
                        Service::Vpc,
                        "DescribeVSwitches",
                        params,
                        "VSwitches",
                        "VSwitch",
                    )
                    .await?
                {
                    out.push(wire::vswitch(&v));
                }
            }
        }
        Ok(out)
    }

    async fn describe_route_tables(&self, vpc_id: &str) -> Result<Vec<RouteTable>> {
        let items = self
            .paged(
                Service::Vpc,
                "DescribeRouteTableList",
                vec![p("VpcId", vpc_id)],
                "RouterTableList",
                "RouterTableListType",
            )
            .await?;
        Ok(items.iter().map(wire::route_table).collect())
    }

    async fn describe_route_entries(&self, route_table_id: &str) -> Result<Vec<RouteEntry>> {
        let items = self
            .tokened(
                Service::Vpc,
                "DescribeRouteEntryList",
                vec![p("RouteTableId", route_table_id)],
                "MaxResult",
                self.opts.page_size,
                "RouteEntrys",
                "RouteEntry",
            )
            .await?;
        Ok(items.iter().map(wire::route_entry).collect())
    }

    async fn create_route_entry(&self, req: &CreateRouteEntryRequest) -> Result<String> {
        let params = vec![
            p("RouteTableId", &req.route_table_id),
            p("DestinationCidrBlock", &req.destination_cidr),
            p("NextHopType", &req.next_hop_type),
            p("NextHopId", &req.next_hop_id),
            p("ClientToken", token(&req.client_token)),
        ];
        let doc = self.call(Service::Vpc, "CreateRouteEntry", params).await?;
        let id = str_of(&doc, "RouteEntryId");
        if id.is_empty() {
            return Err(CloudError::Decode {
                action: "CreateRouteEntry".into(),
                reason: "the response has no RouteEntryId".into(),
            });
        }
        Ok(id)
    }

    async fn delete_route_entry(&self, route_table_id: &str, route_entry_id: &str) -> Result<()> {
        let params = vec![
            p("RouteTableId", route_table_id),
            p("RouteEntryId", route_entry_id),
        ];
        self.call(Service::Vpc, "DeleteRouteEntry", params)
            .await
            .map(drop)
    }
}

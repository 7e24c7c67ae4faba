"""The vendor's own SDKs drive every behaviour the emulator claims, once with the core SDK
(aliyun-python-sdk-core + -ecs + -vpc, signing V2) and once with the Tea SDKs
(alibabacloud_ecs20140526 + alibabacloud_vpc20160428, signing V3):

- every vendor error code the emulator emits for the pool, with its HTTP status as the SDK
  reports it;
- both paging styles of DescribeNetworkInterfaces, walking all pages;
- the ENI lifecycle: create, attach (Attaching -> InUse), detach (-> Available), delete
  (Deleting -> gone);
- route entries through the VPC SDKs (Pending -> Available, delete -> gone);
- prefix delegation: /28 prefixes assigned (Ipv4PrefixCount), listed
  (Ipv4PrefixSets), unassigned (Ipv4Prefix.N), at creation, against the ENI's IPv4
  slots, refused when mixed with single addresses, past 10 a call, or when the vSwitch
  has no free /28; one IPv6 /80 per ENI (Ipv6PrefixCount, Ipv6Prefix.N).

Usage: contract.py HOST PORT KEY SECRET. The emulator must hold the instances i-core and
i-tea (ecs.g7.large) in vsw-a (dual stack), the IPv4-only /29 vSwitches vsw-tiny-core and
vsw-tiny-tea, security group sg-sim, route table vtb-sim, and more than 20 ENIs already
(for the paging walk). Prints one line per check; exits non-zero on the first failure."""

import json
import sys
import time

from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkecs.request.v20140526 import (
    AssignIpv6AddressesRequest,
    AssignPrivateIpAddressesRequest,
    AttachNetworkInterfaceRequest,
    CreateNetworkInterfaceRequest,
    DeleteNetworkInterfaceRequest,
    DescribeNetworkInterfacesRequest,
    DetachNetworkInterfaceRequest,
    UnassignIpv6AddressesRequest,
    UnassignPrivateIpAddressesRequest,
)
from aliyunsdkvpc.request.v20160428 import (
    CreateRouteEntryRequest,
    DeleteRouteEntryRequest,
    DescribeRouteEntryListRequest,
    DescribeVSwitchesRequest,
)
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi import models as openapi_models
from alibabacloud_vpc20160428 import models as vpc_models
from alibabacloud_vpc20160428.client import Client as VpcClient

HOST, PORT, KEY, SECRET = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
REGION = "cn-hangzhou"

# What the emulator answers (docs/cloud.md, "The emulated region"), as (HTTP status, code).
EXPECTED = {
    "eni_ipv4_full": (403, "MaxEniPrivateIpsCountExceeded"),
    "eni_ipv6_full": (403, "MaxEniIpv6IpsCountExceeded"),
    "vswitch_full_assign": (400, "QuotaExceeded.PrivateIpAddress"),
    "vswitch_full_create": (403, "InvalidVSwitchId.IpNotEnough"),
    "vswitch_no_ipv6": (403, "InvalidVSwitch.Ipv6NotTurnOn"),
    "eni_state": (400, "InvalidOperation.InvalidEniState"),
    "enis_per_instance": (403, "EniPerInstanceLimitExceeded"),
    "mixed": (400, "InvalidParameter.Conflict"),
    "too_many_prefixes": (400, "InvalidParameter"),
    "eni_ipv6_prefix_full": (403, "InvalidOperation.Ipv6PrefixCountExceeded"),
}


def check(cond, what):
    if not cond:
        print("FAIL", what)
        sys.exit(1)
    print("ok", what)


class ApiFailure(Exception):
    def __init__(self, status, code):
        super().__init__("%s %s" % (status, code))
        self.status, self.code = status, code


class Core:
    """aliyun-python-sdk-core with the ecs and vpc request classes (V2 signatures)."""

    name = "core SDK (V2)"

    def __init__(self):
        self.client = AcsClient(KEY, SECRET, REGION, port=PORT, auto_retry=False)

    def _do(self, req, **params):
        req.set_endpoint(HOST)
        req.set_protocol_type("http")
        req.set_accept_format("json")
        for k, v in params.items():
            getattr(req, "set_" + k)(v)
        try:
            return json.loads(self.client.do_action_with_exception(req))
        except ServerException as e:
            raise ApiFailure(e.get_http_status(), e.get_error_code())

    def create_eni(self, vsw):
        r = CreateNetworkInterfaceRequest.CreateNetworkInterfaceRequest()
        return self._do(r, VSwitchId=vsw, SecurityGroupId="sg-sim")["NetworkInterfaceId"]

    def attach(self, eni, inst):
        r = AttachNetworkInterfaceRequest.AttachNetworkInterfaceRequest()
        self._do(r, NetworkInterfaceId=eni, InstanceId=inst)

    def detach(self, eni, inst):
        r = DetachNetworkInterfaceRequest.DetachNetworkInterfaceRequest()
        self._do(r, NetworkInterfaceId=eni, InstanceId=inst)

    def delete(self, eni):
        r = DeleteNetworkInterfaceRequest.DeleteNetworkInterfaceRequest()
        self._do(r, NetworkInterfaceId=eni)

    def describe(self, **q):
        r = DescribeNetworkInterfacesRequest.DescribeNetworkInterfacesRequest()
        names = {
            "ids": "NetworkInterfaceIds",
            "page_number": "PageNumber",
            "page_size": "PageSize",
            "max_results": "MaxResults",
            "next_token": "NextToken",
        }
        return self._do(r, **{names[k]: v for k, v in q.items()})

    def assign_v4(self, eni, n):
        r = AssignPrivateIpAddressesRequest.AssignPrivateIpAddressesRequest()
        self._do(r, NetworkInterfaceId=eni, SecondaryPrivateIpAddressCount=n)

    def assign_v6(self, eni, n):
        r = AssignIpv6AddressesRequest.AssignIpv6AddressesRequest()
        self._do(r, NetworkInterfaceId=eni, Ipv6AddressCount=n)

    def assign_prefixes(self, eni, n, secondary=None):
        r = AssignPrivateIpAddressesRequest.AssignPrivateIpAddressesRequest()
        extra = {} if secondary is None else {"SecondaryPrivateIpAddressCount": secondary}
        doc = self._do(r, NetworkInterfaceId=eni, Ipv4PrefixCount=n, **extra)
        return doc["AssignedPrivateIpAddressesSet"]["Ipv4PrefixSet"]["Ipv4Prefixes"]

    def unassign_prefixes(self, eni, prefixes):
        r = UnassignPrivateIpAddressesRequest.UnassignPrivateIpAddressesRequest()
        self._do(r, NetworkInterfaceId=eni, Ipv4Prefixs=prefixes)

    def assign_v6_prefix(self, eni):
        r = AssignIpv6AddressesRequest.AssignIpv6AddressesRequest()
        return self._do(r, NetworkInterfaceId=eni, Ipv6PrefixCount=1)["Ipv6PrefixSets"]["Ipv6Prefix"]

    def unassign_v6_prefixes(self, eni, prefixes):
        r = UnassignIpv6AddressesRequest.UnassignIpv6AddressesRequest()
        self._do(r, NetworkInterfaceId=eni, Ipv6Prefixs=prefixes)

    def create_eni_with_prefixes(self, vsw, n):
        r = CreateNetworkInterfaceRequest.CreateNetworkInterfaceRequest()
        doc = self._do(r, VSwitchId=vsw, SecurityGroupId="sg-sim", Ipv4PrefixCount=n)
        return doc["NetworkInterfaceId"]

    def create_route(self, cidr, inst):
        r = CreateRouteEntryRequest.CreateRouteEntryRequest()
        doc = self._do(
            r,
            RouteTableId="vtb-sim",
            DestinationCidrBlock=cidr,
            NextHopType="Instance",
            NextHopId=inst,
        )
        return doc["RouteEntryId"]

    def routes(self, entry_id):
        r = DescribeRouteEntryListRequest.DescribeRouteEntryListRequest()
        doc = self._do(r, RouteTableId="vtb-sim", RouteEntryId=entry_id)
        return doc["RouteEntrys"]["RouteEntry"]

    def delete_route(self, entry_id):
        r = DeleteRouteEntryRequest.DeleteRouteEntryRequest()
        self._do(r, RouteTableId="vtb-sim", RouteEntryId=entry_id)

    def vswitches(self, vsw):
        r = DescribeVSwitchesRequest.DescribeVSwitchesRequest()
        return self._do(r, VSwitchId=vsw)["VSwitches"]["VSwitch"]


class Tea:
    """The Tea SDKs (alibabacloud_ecs20140526, alibabacloud_vpc20160428): V3 signatures."""

    name = "Tea SDK (V3)"

    def __init__(self):
        cfg = openapi_models.Config(
            access_key_id=KEY,
            access_key_secret=SECRET,
            region_id=REGION,
            endpoint="%s:%d" % (HOST, PORT),
            protocol="http",
        )
        self.ecs, self.vpc = EcsClient(cfg), VpcClient(cfg)

    @staticmethod
    def _do(call, req):
        try:
            return call(req).body.to_map()
        except Exception as e:  # Tea raises its own exception type
            code = getattr(e, "code", None)
            if code is None:
                raise
            status = getattr(e, "statusCode", None)
            if status is None and isinstance(getattr(e, "data", None), dict):
                status = e.data.get("statusCode")
            raise ApiFailure(status, code)

    def create_eni(self, vsw):
        req = ecs_models.CreateNetworkInterfaceRequest(
            region_id=REGION, v_switch_id=vsw, security_group_id="sg-sim"
        )
        return self._do(self.ecs.create_network_interface, req)["NetworkInterfaceId"]

    def attach(self, eni, inst):
        req = ecs_models.AttachNetworkInterfaceRequest(
            region_id=REGION, network_interface_id=eni, instance_id=inst
        )
        self._do(self.ecs.attach_network_interface, req)

    def detach(self, eni, inst):
        req = ecs_models.DetachNetworkInterfaceRequest(
            region_id=REGION, network_interface_id=eni, instance_id=inst
        )
        self._do(self.ecs.detach_network_interface, req)

    def delete(self, eni):
        req = ecs_models.DeleteNetworkInterfaceRequest(
            region_id=REGION, network_interface_id=eni
        )
        self._do(self.ecs.delete_network_interface, req)

    def describe(self, **q):
        if "ids" in q:
            q["network_interface_id"] = q.pop("ids")
        req = ecs_models.DescribeNetworkInterfacesRequest(region_id=REGION, **q)
        return self._do(self.ecs.describe_network_interfaces, req)

    def assign_v4(self, eni, n):
        req = ecs_models.AssignPrivateIpAddressesRequest(
            region_id=REGION, network_interface_id=eni, secondary_private_ip_address_count=n
        )
        self._do(self.ecs.assign_private_ip_addresses, req)

    def assign_v6(self, eni, n):
        req = ecs_models.AssignIpv6AddressesRequest(
            region_id=REGION, network_interface_id=eni, ipv_6address_count=n
        )
        self._do(self.ecs.assign_ipv_6addresses, req)

    def assign_prefixes(self, eni, n, secondary=None):
        req = ecs_models.AssignPrivateIpAddressesRequest(
            region_id=REGION,
            network_interface_id=eni,
            ipv_4prefix_count=n,
            secondary_private_ip_address_count=secondary,
        )
        doc = self._do(self.ecs.assign_private_ip_addresses, req)
        return doc["AssignedPrivateIpAddressesSet"]["Ipv4PrefixSet"]["Ipv4Prefixes"]

    def unassign_prefixes(self, eni, prefixes):
        req = ecs_models.UnassignPrivateIpAddressesRequest(
            region_id=REGION, network_interface_id=eni, ipv_4prefix=prefixes
        )
        self._do(self.ecs.unassign_private_ip_addresses, req)

    def assign_v6_prefix(self, eni):
        req = ecs_models.AssignIpv6AddressesRequest(
            region_id=REGION, network_interface_id=eni, ipv_6prefix_count=1
        )
        return self._do(self.ecs.assign_ipv_6addresses, req)["Ipv6PrefixSets"]["Ipv6Prefix"]

    def unassign_v6_prefixes(self, eni, prefixes):
        req = ecs_models.UnassignIpv6AddressesRequest(
            region_id=REGION, network_interface_id=eni, ipv_6prefix=prefixes
        )
        self._do(self.ecs.unassign_ipv_6addresses, req)

    def create_eni_with_prefixes(self, vsw, n):
        req = ecs_models.CreateNetworkInterfaceRequest(
            region_id=REGION, v_switch_id=vsw, security_group_id="sg-sim", ipv_4prefix_count=n
        )
        return self._do(self.ecs.create_network_interface, req)["NetworkInterfaceId"]

    def create_route(self, cidr, inst):
        req = vpc_models.CreateRouteEntryRequest(
            region_id=REGION,
            route_table_id="vtb-sim",
            destination_cidr_block=cidr,
            next_hop_type="Instance",
            next_hop_id=inst,
        )
        return self._do(self.vpc.create_route_entry, req)["RouteEntryId"]

    def routes(self, entry_id):
        req = vpc_models.DescribeRouteEntryListRequest(
            region_id=REGION, route_table_id="vtb-sim", route_entry_id=entry_id
        )
        return self._do(self.vpc.describe_route_entry_list, req)["RouteEntrys"]["RouteEntry"]

    def delete_route(self, entry_id):
        req = vpc_models.DeleteRouteEntryRequest(
            region_id=REGION, route_table_id="vtb-sim", route_entry_id=entry_id
        )
        self._do(self.vpc.delete_route_entry, req)

    def vswitches(self, vsw):
        req = vpc_models.DescribeVSwitchesRequest(region_id=REGION, v_switch_id=vsw)
        return self._do(self.vpc.describe_vswitches, req)["VSwitches"]["VSwitch"]


def wait_for(what, probe, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if probe():
            return True
        time.sleep(0.05)
    check(False, what + " (timed out)")


def eni_set(doc):
    return doc["NetworkInterfaceSets"]["NetworkInterfaceSet"]


def status_of(d, eni):
    found = eni_set(d.describe(ids=[eni]))
    return found[0]["Status"] if found else None


def expect_failure(d, what, key, fn):
    want_status, want_code = EXPECTED[key]
    try:
        fn()
    except ApiFailure as e:
        print("  %s answered %s %s" % (d.name, e.status, e.code))
        check(
            (e.status, e.code) == (want_status, want_code),
            "%s: %s -> %d %s" % (d.name, what, want_status, want_code),
        )
        return
    check(False, "%s: %s is refused" % (d.name, what))


def fill(d, assign, eni, limit=100):
    """Assigns one address at a time until refused; returns how many were assigned."""
    for n in range(limit):
        try:
            assign(eni, 1)
        except ApiFailure:
            return n
    return limit


def paging(d):
    by_number, total, page = [], None, 1
    while True:
        doc = d.describe(page_number=page, page_size=10)
        total = doc["TotalCount"]
        got = eni_set(doc)
        by_number += [e["NetworkInterfaceId"] for e in got]
        if not got or len(by_number) >= total:
            break
        page += 1
    check(total > 20 and page >= 3, "%s: PageNumber/PageSize walks %d pages" % (d.name, page))
    by_token, token, pages = [], None, 0
    while True:
        q = {"max_results": 10}
        if token:
            q["next_token"] = token
        doc = d.describe(**q)
        if pages == 0:
            check("TotalCount" not in doc, "%s: a NextToken page has no TotalCount" % d.name)
        by_token += [e["NetworkInterfaceId"] for e in eni_set(doc)]
        pages += 1
        token = doc.get("NextToken")
        if not token:
            break
    check(
        sorted(by_number) == sorted(by_token) and len(set(by_token)) == total,
        "%s: MaxResults/NextToken walks %d pages to the same %d ENIs" % (d.name, pages, total),
    )


def listed_prefixes(d, eni):
    e = eni_set(d.describe(ids=[eni]))[0]
    v4 = [p["Ipv4Prefix"] for p in e.get("Ipv4PrefixSets", {}).get("Ipv4PrefixSet", [])]
    v6 = [p["Ipv6Prefix"] for p in e.get("Ipv6PrefixSets", {}).get("Ipv6PrefixSet", [])]
    return v4, v6


def prefixes(d, inst, tiny):
    # An attached ENI (ecs.g7.large: 6 IPv4 slots, the primary takes one).
    p = d.create_eni("vsw-a")
    d.attach(p, inst)
    wait_for("%s: prefix ENI InUse" % d.name, lambda: status_of(d, p) == "InUse")
    got = d.assign_prefixes(p, 2)
    check(len(got) == 2 and all(x.endswith("/28") for x in got),
          "%s: AssignPrivateIpAddresses Ipv4PrefixCount=2 -> %s" % (d.name, got))
    check(listed_prefixes(d, p)[0] == got,
          "%s: DescribeNetworkInterfaces lists Ipv4PrefixSets" % d.name)
    expect_failure(d, "Ipv4PrefixCount with SecondaryPrivateIpAddressCount", "mixed",
                   lambda: d.assign_prefixes(p, 1, secondary=1))
    expect_failure(d, "11 prefixes in one call", "too_many_prefixes",
                   lambda: d.assign_prefixes(p, 11))
    n = 0
    while n < 10:
        try:
            d.assign_prefixes(p, 1)
            n += 1
        except ApiFailure:
            break
    check(n == 3, "%s: prefixes take the ENI's IPv4 slots (3 more fit, %d did)" % (d.name, n))
    expect_failure(d, "a prefix past the ENI's IPv4 slots", "eni_ipv4_full",
                   lambda: d.assign_prefixes(p, 1))
    d.unassign_prefixes(p, got[:1])
    check(got[0] not in listed_prefixes(d, p)[0],
          "%s: UnassignPrivateIpAddresses Ipv4Prefix.1 -> gone" % d.name)
    v6 = d.assign_v6_prefix(p)
    check(len(v6) == 1 and v6[0].endswith("/80"),
          "%s: AssignIpv6Addresses Ipv6PrefixCount=1 -> %s" % (d.name, v6))
    check(listed_prefixes(d, p)[1] == v6, "%s: Ipv6PrefixSets lists it" % d.name)
    expect_failure(d, "a second /80 on the ENI", "eni_ipv6_prefix_full",
                   lambda: d.assign_v6_prefix(p))
    d.unassign_v6_prefixes(p, v6)
    check(listed_prefixes(d, p)[1] == [], "%s: UnassignIpv6Addresses Ipv6Prefix.1" % d.name)
    # A vSwitch without a free /28 (a /29).
    expect_failure(d, "a prefix on a vSwitch with no free /28", "vswitch_full_create",
                   lambda: d.create_eni_with_prefixes(tiny, 1))
    c = d.create_eni_with_prefixes("vsw-a", 2)
    check(len(listed_prefixes(d, c)[0]) == 2,
          "%s: CreateNetworkInterface Ipv4PrefixCount=2" % d.name)
    d.delete(c)
    d.detach(p, inst)
    wait_for("%s: prefix ENI detached" % d.name, lambda: status_of(d, p) == "Available")
    d.delete(p)
    wait_for("%s: prefix ENI gone" % d.name, lambda: status_of(d, p) is None)


def scenario(d, inst, tiny, net):
    paging(d)

    # Lifecycle and the per-ENI limits on an attached ENI.
    e1 = d.create_eni("vsw-a")
    check(status_of(d, e1) == "Available", "%s: CreateNetworkInterface -> Available" % d.name)
    d.attach(e1, inst)
    wait_for("%s: attach -> InUse" % d.name, lambda: status_of(d, e1) == "InUse")
    check(True, "%s: AttachNetworkInterface -> Attaching -> InUse" % d.name)
    expect_failure(d, "attaching an InUse ENI", "eni_state", lambda: d.attach(e1, inst))
    check(fill(d, d.assign_v4, e1) > 0, "%s: AssignPrivateIpAddresses up to the limit" % d.name)
    expect_failure(d, "one IPv4 past the ENI's limit", "eni_ipv4_full", lambda: d.assign_v4(e1, 1))
    check(fill(d, d.assign_v6, e1) > 0, "%s: AssignIpv6Addresses up to the limit" % d.name)
    expect_failure(d, "one IPv6 past the ENI's limit", "eni_ipv6_full", lambda: d.assign_v6(e1, 1))

    # A full vSwitch, and one without IPv6.
    e2 = d.create_eni(tiny)
    fill(d, d.assign_v4, e2)
    expect_failure(d, "AssignPrivateIpAddresses on a full vSwitch", "vswitch_full_assign",
                   lambda: d.assign_v4(e2, 1))
    expect_failure(d, "CreateNetworkInterface on a full vSwitch", "vswitch_full_create",
                   lambda: d.create_eni(tiny))
    expect_failure(d, "AssignIpv6Addresses on an IPv4-only vSwitch", "vswitch_no_ipv6",
                   lambda: d.assign_v6(e2, 1))
    check(d.vswitches(tiny)[0]["AvailableIpAddressCount"] == 0,
          "%s: DescribeVSwitches shows the vSwitch full" % d.name)

    # ENIs per instance (ecs.g7.large: 3 with the primary).
    e3 = d.create_eni("vsw-a")
    d.attach(e3, inst)
    wait_for("%s: second attach -> InUse" % d.name, lambda: status_of(d, e3) == "InUse")
    e4 = d.create_eni("vsw-a")
    expect_failure(d, "an ENI past the instance's limit", "enis_per_instance",
                   lambda: d.attach(e4, inst))

    # Detach, delete: Deleting, then gone.
    d.detach(e3, inst)
    wait_for("%s: detach -> Available" % d.name, lambda: status_of(d, e3) == "Available")
    check(True, "%s: DetachNetworkInterface -> Detaching -> Available" % d.name)
    d.delete(e3)
    check(status_of(d, e3) == "Deleting", "%s: DeleteNetworkInterface -> Deleting" % d.name)
    expect_failure(d, "deleting a Deleting ENI", "eni_state", lambda: d.delete(e3))
    wait_for("%s: Deleting -> gone" % d.name, lambda: status_of(d, e3) is None)
    check(True, "%s: the deleted ENI is gone" % d.name)
    prefixes(d, inst, tiny)

    d.detach(e1, inst)
    wait_for("%s: detach e1" % d.name, lambda: status_of(d, e1) == "Available")
    for e in (e1, e2, e4):
        d.delete(e)
    for e in (e1, e2, e4):
        wait_for("%s: cleanup" % d.name, lambda: status_of(d, e) is None)

    # Route entries through the VPC SDK.
    rte = d.create_route(net, inst)
    first = d.routes(rte)
    check(len(first) == 1 and first[0]["Status"] in ("Pending", "Available"),
          "%s: CreateRouteEntry -> %s" % (d.name, first[0]["Status"] if first else None))
    wait_for("%s: route entry Available" % d.name,
             lambda: d.routes(rte)[0]["Status"] == "Available")
    check(True, "%s: route entry Pending -> Available" % d.name)
    d.delete_route(rte)
    wait_for("%s: route entry gone" % d.name, lambda: not d.routes(rte))
    check(True, "%s: DeleteRouteEntry -> gone" % d.name)


scenario(Core(), "i-core", "vsw-tiny-core", "10.201.0.0/24")
scenario(Tea(), "i-tea", "vsw-tiny-tea", "10.202.0.0/24")
print("all checks passed")

/* NetworkPolicy enforcement: map layouts shared between bpf/policy.c and the Rust loader
 * (crates/bpf/src/policy/maps.rs mirrors every struct here; keep them in step).
 *
 * Addresses are 16 bytes everywhere except in the IPv4 LPM keys: an IPv4 address is stored
 * as the IPv4-mapped IPv6 address ::ffff:a.b.c.d. Multi-byte fields are in network byte
 * order where they come from the packet (addresses, ports), host order otherwise. */
#ifndef UNICNI_POLICY_H
#define UNICNI_POLICY_H

#include <linux/types.h>

/* Key of `policy_pods` and `policy_node`. */
struct pol_addr {
	__u8 a[16];
};

/* Value of `policy_pods` (every local pod address, isolated or not). */
#define POL_ISOLATED_INGRESS 1 /* selected by a policy for ingress */
#define POL_ISOLATED_EGRESS 2  /* selected by a policy for egress */

/* Keys of the remote-address tries `policy_v4_{ingress,egress}`: prefixlen = 32 (the local
 * address, matched whole) + the remote prefix length. */
struct pol_lpm4 {
	__u32 prefixlen;
	__u32 local;
	__u32 remote;
};

/* `policy_v6_{ingress,egress}`: prefixlen = 128 + the remote prefix length. */
struct pol_lpm6 {
	__u32 prefixlen;
	__u8 local[16];
	__u8 remote[16];
};

/* Key of `policy_services` (the cluster's Service CIDRs): prefixlen over the 16-byte
 * address (an IPv4 CIDR a.b.c.d/n is ::ffff:a.b.c.d/(96 + n)). */
struct pol_svc_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Value of the remote-address tries. */
#define POL_RULE_ANY 1 /* any protocol, any port: port_set is unused */
struct pol_rule {
	__u32 port_set;
	__u32 flags;
};

/* Key of `policy_ports`: prefixlen = 48 + the port prefix length (0..16). */
struct pol_port_key {
	__u32 prefixlen;
	__u32 port_set;
	__u8 proto;
	__u8 pad;
	__u16 port; /* network byte order */
};

/* Key of `policy_ct`: a flow in the direction of the packet that created or matches it.
 * Ports are the TCP/UDP/SCTP ports, the ICMP echo identifier in both for echo, 0 else. */
struct pol_ct_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct pol_ct_value {
	__u64 seen_ns; /* bpf_ktime_get_ns() of the last refresh */
};

/* Slots of the per-CPU `policy_stats` array. */
enum pol_stat {
	POL_STAT_NOT_IP = 0,       /* ARP and other non-IP frames */
	POL_STAT_NO_POD = 1,       /* neither end is a local pod */
	POL_STAT_ESTABLISHED = 2,  /* a conntrack entry: established flow or a reply */
	POL_STAT_NEW = 3,          /* a new flow, allowed (conntrack entry created) */
	POL_STAT_NODE = 4,         /* to or from this node's own addresses */
	POL_STAT_CONTROL = 5,      /* NDP, ICMP errors of known flows, non-first fragments, self */
	POL_STAT_DROP_EGRESS = 6,  /* dropped: the source pod's egress policy */
	POL_STAT_DROP_INGRESS = 7, /* dropped: the destination pod's ingress policy */
	POL_STAT_SERVICE = 8,      /* from a local pod to a Service address: judged after DNAT */
	POL_STAT_MAX = 9,
};

/* Idle time after which a conntrack entry no longer lets packets through on its own (the
 * flow is checked against the policy again and, if still allowed, refreshed). */
#define POL_CT_TCP_NS (3600ULL * 1000000000ULL)
#define POL_CT_OTHER_NS (180ULL * 1000000000ULL)
/* An entry is rewritten at most this often (saves a cache line write per packet). */
#define POL_CT_REFRESH_NS (1000000000ULL)

/* Values of the `policy_links` map (ifindex -> how the programs are attached there). */
#define POL_ATTACH_TCX 1
#define POL_ATTACH_NETLINK 2

#endif

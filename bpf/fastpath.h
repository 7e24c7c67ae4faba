/* Shared between the eBPF programs and the Rust loader (crates/bpf/src/maps.rs mirrors it). */
#ifndef UNICNI_FASTPATH_H
#define UNICNI_FASTPATH_H

#include <linux/types.h>

/* Value of the `endpoints` map, keyed by the pod's IPv4 address in network byte order. */
struct endpoint {
	__u32 ifindex;   /* host-side veth of the pod, in the node's network namespace */
	__u8 mac[6];     /* the pod's own MAC: frames are only short-cut when addressed to it */
	__u16 flags;     /* reserved, 0 */
};

/* Slots of the per-CPU `fastpath_stats` array. */
enum fastpath_stat {
	STAT_REDIRECT = 0,         /* redirected into the destination pod */
	STAT_PASS_NOT_IPV4 = 1,    /* ARP, IPv6, anything else: left to the bridge */
	STAT_PASS_NO_ENDPOINT = 2, /* destination is not a local pod (other node, service, host) */
	STAT_PASS_OTHER_MAC = 3,   /* local pod IP but the frame is not addressed to its MAC */
	STAT_PASS_HOST_FLOW = 4,   /* a flow the host forwarded (and may have NATed): keep it there */
	STAT_MAX = 5,
};

/* Key of `host_flows`: a flow as seen in the direction of the packet being looked up.
 * ICMP echo uses its identifier as both ports so both directions map alike. */
struct flow_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* Values of the `fastpath_links` map (ifindex -> how the program is attached there). */
#define ATTACH_TCX 1
#define ATTACH_NETLINK 2

#endif

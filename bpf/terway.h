/* Shared between bpf/terway.c and the Rust loader (crates/bpf/src/terway.rs mirrors it). */
#ifndef UNICNI_TERWAY_H
#define UNICNI_TERWAY_H

#include <linux/types.h>

/* Value of `tw_pods`, keyed by the pod's IPv4 address in network byte order. */
struct tw_pod {
	__u32 veth_ifindex; /* the pod's host-side veth (tw<hash>) in the node's namespace */
	__u32 eni_ifindex;  /* the link of the ENI that owns the pod's address */
	__u8 pod_mac[6];    /* the pod's eth0: destination MAC of frames into the pod */
	__u8 veth_mac[6];   /* the host veth: source MAC of frames into the pod */
};

/* Key of `tw_host_flows`, always written from the pod's side. `peer` = 0 and
 * `peer_port` = 0 is the wildcard form: every flow of that pod socket (a connection to a
 * Service, whose replies come from a backend address the pod never addressed). */
struct tw_flow {
	__u32 pod;
	__u32 peer;
	__u16 pod_port;
	__u16 peer_port;
	__u8 proto;
	__u8 pad[3];
};

/* Key of the `tw_host_cidrs` LPM trie (destinations that keep the host path). */
struct tw_cidr {
	__u32 prefixlen;
	__u32 addr;
};

/* IPv6: key of `tw_pods6` (the address as in the header, network byte order; the value is
 * a `struct tw_pod` as for IPv4), of `tw_host_flows6` and of the `tw_host_cidrs6` LPM
 * trie. Separate maps: the IPv4 maps keep their layout, so pins of an older build are
 * reused across an upgrade. */
struct tw_addr6 {
	__u32 a[4];
};

struct tw_flow6 {
	struct tw_addr6 pod;
	struct tw_addr6 peer;
	__u16 pod_port;
	__u16 peer_port;
	__u8 proto;
	__u8 pad[3];
};

struct tw_cidr6 {
	__u32 prefixlen;
	struct tw_addr6 addr;
};

/* Slots of the per-CPU `tw_stats` array (IPv4 and frames of neither family) and of
 * `tw_stats6` (IPv6; "not IPv4" reads "not handled IPv6": extension headers, NDP, MLD,
 * link-local or multicast addresses). */
enum tw_stat {
	TW_OUT_REDIRECT = 0,       /* pod -> ENI, neighbour known: bpf_redirect */
	TW_OUT_REDIRECT_NEIGH = 1, /* pod -> ENI, neighbour resolved by bpf_redirect_neigh */
	TW_OUT_LOCAL = 2,          /* pod -> pod of this node: bpf_redirect_peer */
	TW_OUT_PASS_HOST_DST = 3,  /* destination keeps the host path (Service CIDR, node) */
	TW_OUT_PASS_ROUTE = 4,     /* the FIB says local, unreachable or not via the pod's ENI */
	TW_OUT_PASS_HOST_FLOW = 5, /* a flow that reached the pod through the host */
	TW_OUT_PASS_OTHER = 6,     /* not IPv4, fragment, TTL, ICMP error, unknown source */
	TW_IN_REDIRECT = 7,        /* ENI -> pod: bpf_redirect_peer */
	TW_IN_PASS_NO_POD = 8,     /* not for a pod of this node (the node itself, ARP...) */
	TW_IN_PASS_HOST_FLOW = 9,  /* a reply the host must un-NAT */
	TW_IN_PASS_OTHER = 10,     /* fragment, TTL, ICMP error, not addressed to us */
	TW_STAT_MAX = 11,
};

/* Values of `tw_links`: how (low byte) and as what (second byte) the programs are
 * attached to an interface. */
#define TW_ATTACH_TCX 1
#define TW_ATTACH_NETLINK 2
#define TW_ROLE_POD 0x100
#define TW_ROLE_ENI 0x200

#endif

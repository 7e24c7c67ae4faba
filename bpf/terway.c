// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Fast path of the terway shared-ENI datapath (terway.datapath = "ebpf").
 *
 * The routing datapath takes a shared-ENI pod's packets through the host: the pod's veth
 * (tw<hash>) delivers them to the host's IP stack, policy rule 2048 picks the table of
 * the ENI that owns the pod's address, and the packet leaves by that ENI towards the
 * vSwitch gateway; inbound, the ENI delivers to the host stack, rule 512 and the pod's
 * /32 route send it to the veth. These programs make the same decisions without the host
 * stack (routing code, netfilter, conntrack, qdisc of the veth):
 *
 *   uc_tw_pod     tc ingress of each pod's host veth (frames from the pod). IP from a
 *                 known pod to a VPC destination: a FIB lookup with the kernel's own
 *                 rules and tables (so rule 2048 and the ENI's table decide, as in the
 *                 routing datapath); when the route leaves by the pod's ENI, TTL - 1 and
 *                 out of the ENI with bpf_redirect (neighbour known) or bpf_redirect_neigh
 *                 (the kernel resolves the gateway). To another pod of this node: straight
 *                 into it with bpf_redirect_peer.
 *   uc_tw_eni     tc ingress of each ENI link (frames from the VPC). IP addressed to a
 *                 pod of this node: destination MAC = the pod's, source MAC = its host
 *                 veth's, TTL - 1, and bpf_redirect_peer into the pod's namespace.
 *   uc_tw_pod_eg  tc egress of each pod's host veth: sees exactly the frames that reached
 *                 the pod through the host (redirected ones skip it) and remembers their
 *                 flows in `tw_host_flows`, so their replies also go through the host.
 *
 * IPv6 takes the same decisions with maps of its own (tw_pods6, tw_host_cidrs6,
 * tw_host_flows6, counters in tw_stats6): hop limit for TTL; extension headers (fragments,
 * hop-by-hop), ICMPv6 other than echo (NDP, MLD, errors) and link-local or multicast
 * addresses keep the host path, so neighbour discovery works as in the routing datapath.
 *
 * Everything else keeps the host path: neither IPv4 nor IPv6, fragments, IP options,
 * TTL <= 1, ICMP other than echo (errors carry a header that NAT may have to rewrite), destinations in
 * `tw_host_cidrs` (the Service CIDRs and the node's addresses, filled by the agent:
 * kube-proxy must DNAT them), anything the FIB does not send out of the pod's own ENI
 * (the node's addresses, unreachable destinations), and flows that went through the host
 * once (NAT state lives in the host's conntrack):
 *   - a connection the host delivered into the pod (NodePort, a node's health probe, a
 *     Service backend reached via the host): exact flow recorded by uc_tw_pod_eg;
 *   - a connection from the pod to a Service: its replies come from the backend's address,
 *     which the pod never addressed, so the pod's socket (address, port, protocol) is
 *     recorded as a wildcard by uc_tw_pod when it passes the packet to the host.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "common.h"
#include "terway.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_ICMPV6_ 58
#define ICMPV6_ECHO_REQUEST_ 128
#define ICMPV6_ECHO_REPLY_ 129
#define IPV6_FLOWINFO_MASK_ bpf_htonl(0x0FFFFFFF)
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

/* An LPM trie of destinations that keep the host path. */
#define TW_CIDRS_MAP(key_type)                                       \
	struct {                                                     \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                 \
		__uint(max_entries, 256);                            \
		__type(key, key_type);                               \
		__type(value, __u8);                                 \
		__uint(map_flags, BPF_F_NO_PREALLOC);                \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                 \
	}

PINNED_MAP(BPF_MAP_TYPE_HASH, 4096, __u32, struct tw_pod) tw_pods SEC(".maps");
TW_CIDRS_MAP(struct tw_cidr) tw_host_cidrs SEC(".maps");
PINNED_MAP(BPF_MAP_TYPE_LRU_HASH, 65536, struct tw_flow, __u8) tw_host_flows SEC(".maps");
STATS_MAP(TW_STAT_MAX) tw_stats SEC(".maps");

/* IPv6: the same maps, keyed by IPv6 addresses. */
PINNED_MAP(BPF_MAP_TYPE_HASH, 4096, struct tw_addr6, struct tw_pod) tw_pods6 SEC(".maps");
TW_CIDRS_MAP(struct tw_cidr6) tw_host_cidrs6 SEC(".maps");
PINNED_MAP(BPF_MAP_TYPE_LRU_HASH, 65536, struct tw_flow6, __u8) tw_host_flows6 SEC(".maps");
STATS_MAP(TW_STAT_MAX) tw_stats6 SEC(".maps");

LINKS_MAP(4096) tw_links SEC(".maps");

/* ----------------------------------------------------------------------------------- */
/* Each program takes the same decisions for both families. `v6` is a constant at every  */
/* call (the programs branch on skb->protocol first), so the compiler keeps one straight  */
/* path per family and the verifier sees one map at each map helper call.               */
/* ----------------------------------------------------------------------------------- */

/* A frame of either family, its headers readable. */
struct frame {
	struct ethhdr *eth;
	struct iphdr *ip;      /* IPv4 */
	struct ipv6hdr *ip6;   /* IPv6 */
	__u16 sport;           /* network order; ICMP echo: its identifier as both */
	__u16 dport;
	__u8 proto;
};

/* Key of tw_host_flows or tw_host_flows6. */
union flow {
	struct tw_flow v4;
	struct tw_flow6 v6;
};

static __always_inline void *pods_map(int v6)
{
	return v6 ? (void *)&tw_pods6 : (void *)&tw_pods;
}

static __always_inline void *flows_map(int v6)
{
	return v6 ? (void *)&tw_host_flows6 : (void *)&tw_host_flows;
}

static __always_inline int count(int v6, __u32 slot, int verdict)
{
	return count_in(v6 ? (void *)&tw_stats6 : (void *)&tw_stats, slot, verdict);
}

/* Makes the Ethernet and IP headers and the first 8 bytes after them readable. Returns -1
 * when the frame is not one the fast path handles: too short, IPv4 options or fragments;
 * with `hop`, a TTL or hop limit the fast path must not decrement to 0. */
static __always_inline int frame_of(struct __sk_buff *skb, int v6, int hop, struct frame *fr)
{
	__u32 need = sizeof(struct ethhdr) + 8;
	void *data_end;

	need += v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
	fr->eth = pull_headers(skb, need, &data_end);
	if (!fr->eth)
		return -1;
	if (v6) {
		fr->ip6 = (void *)(fr->eth + 1);
		fr->proto = fr->ip6->nexthdr;
		return fr->ip6->version != 6 || (hop && fr->ip6->hop_limit <= 1) ? -1 : 0;
	}
	fr->ip = (void *)(fr->eth + 1);
	fr->proto = fr->ip->protocol;
	if (fr->ip->ihl != 5 || (fr->ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return -1;
	return hop && fr->ip->ttl <= 1 ? -1 : 0;
}

/* The frame's source or destination address: the key of tw_pods or tw_pods6. */
static __always_inline void *addr_of(const struct frame *fr, int v6, int dst)
{
	if (v6)
		return dst ? (void *)&fr->ip6->daddr : (void *)&fr->ip6->saddr;
	return dst ? (void *)&fr->ip->daddr : (void *)&fr->ip->saddr;
}

/* Link-local (fe80::/10) or multicast (ff00::/8): never forwarded by the host, never ours. */
static __always_inline int ll_or_mc(const void *a)
{
	const __u8 *b = a;

	return b[0] == 0xff || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80);
}

/* Reads the frame's ports (ICMP echo: its identifier as both; other IPv4 protocols: 0).
 * Returns -1 for what the fast path leaves to the host: ICMP other than echo (errors quote
 * a header NAT may have to rewrite; NDP, MLD), and in IPv6 extension headers (fragments,
 * hop-by-hop: MLD) and other protocols. */
static __always_inline int ports_of(struct frame *fr, int v6)
{
	/* frame_of made 8 bytes after the fixed header readable. */
	void *l4 = v6 ? (void *)(fr->ip6 + 1) : (void *)(fr->ip + 1);
	struct icmp_echo *icmp = l4;
	__u16 *p = l4;

	if (fr->proto == IPPROTO_TCP || fr->proto == IPPROTO_UDP || fr->proto == IPPROTO_SCTP) {
		fr->sport = p[0];
		fr->dport = p[1];
		return 0;
	}
	if (fr->proto != (v6 ? IPPROTO_ICMPV6_ : IPPROTO_ICMP))
		return v6 ? -1 : 0;
	if (icmp->type != (v6 ? ICMPV6_ECHO_REQUEST_ : ICMP_ECHO) &&
	    icmp->type != (v6 ? ICMPV6_ECHO_REPLY_ : ICMP_ECHOREPLY))
		return -1;
	fr->sport = icmp->id;
	fr->dport = icmp->id;
	return 0;
}

/* The frame's flow as the maps key it, from the pod's side (`to_pod`: the frame goes into
 * the pod, whose address is the destination). */
static __always_inline void flow_of(const struct frame *fr, int v6, int to_pod, union flow *f)
{
	__u16 pod_port = to_pod ? fr->dport : fr->sport;
	__u16 peer_port = to_pod ? fr->sport : fr->dport;

	if (v6) {
		__builtin_memcpy(&f->v6.pod, addr_of(fr, 1, to_pod), sizeof(f->v6.pod));
		__builtin_memcpy(&f->v6.peer, addr_of(fr, 1, !to_pod), sizeof(f->v6.peer));
		f->v6.pod_port = pod_port;
		f->v6.peer_port = peer_port;
		f->v6.proto = fr->proto;
		return;
	}
	f->v4.pod = to_pod ? fr->ip->daddr : fr->ip->saddr;
	f->v4.peer = to_pod ? fr->ip->saddr : fr->ip->daddr;
	f->v4.pod_port = pod_port;
	f->v4.peer_port = peer_port;
	f->v4.proto = fr->proto;
}

/* The wildcard form of a flow: every flow of that pod socket. */
static __always_inline void wildcard(union flow *f, int v6)
{
	if (v6) {
		__builtin_memset(&f->v6.peer, 0, sizeof(f->v6.peer));
		f->v6.peer_port = 0;
	} else {
		f->v4.peer = 0;
		f->v4.peer_port = 0;
	}
}

/* Whether the flow (exact, or the pod socket's wildcard) went through the host once. */
static __always_inline int host_flow(const union flow *f, int v6)
{
	union flow any = *f;

	if (bpf_map_lookup_elem(flows_map(v6), f))
		return 1;
	wildcard(&any, v6);
	return bpf_map_lookup_elem(flows_map(v6), &any) != NULL;
}

/* Whether the destination keeps the host path (tw_host_cidrs: Services, the node). */
static __always_inline int host_dst(const struct frame *fr, int v6)
{
	struct tw_cidr6 k6 = { .prefixlen = 128 };
	struct tw_cidr k = { .prefixlen = 32 };

	if (v6) {
		__builtin_memcpy(&k6.addr, &fr->ip6->daddr, sizeof(k6.addr));
		return bpf_map_lookup_elem(&tw_host_cidrs6, &k6) != NULL;
	}
	k.addr = fr->ip->daddr;
	return bpf_map_lookup_elem(&tw_host_cidrs, &k) != NULL;
}

/* ip_decrease_ttl() of the kernel: TTL - 1 with an incremental checksum update (the
 * header's one's complement sum is unchanged, so CHECKSUM_COMPLETE stays valid). IPv6 has
 * no header checksum. */
static __always_inline void hop_dec(const struct frame *fr, int v6)
{
	__u32 check;

	if (v6) {
		fr->ip6->hop_limit--;
		return;
	}
	check = fr->ip->check;
	check += bpf_htons(0x0100);
	fr->ip->check = (__u16)(check + (check >= 0xFFFF));
	fr->ip->ttl--;
}

static __always_inline void set_macs(struct ethhdr *eth, const __u8 *dst, const __u8 *src)
{
	__builtin_memcpy(eth->h_dest, dst, ETH_ALEN);
	__builtin_memcpy(eth->h_source, src, ETH_ALEN);
}

/* Straight into the pod's namespace, as the host would deliver it: TTL - 1, the pod's MAC
 * as destination, its host veth's as source. */
static __always_inline int into_pod(const struct frame *fr, int v6, const struct tw_pod *pod,
				    __u32 slot)
{
	hop_dec(fr, v6);
	set_macs(fr->eth, pod->pod_mac, pod->veth_mac);
	count(v6, slot, 0);
	return bpf_redirect_peer(pod->veth_ifindex, 0);
}

/* The kernel's routing decision, with its rules: as if the host forwarded the frame
 * arriving on the veth. tot_len = 0: the helper checks the skb against the MTU, GSO
 * included. */
static __always_inline long route(struct __sk_buff *skb, const struct frame *fr, int v6,
				  struct bpf_fib_lookup *fib)
{
	fib->l4_protocol = fr->proto;
	fib->sport = fr->sport;
	fib->dport = fr->dport;
	fib->ifindex = skb->ifindex;
	if (v6) {
		fib->family = AF_INET6;
		fib->flowinfo = *(__be32 *)fr->ip6 & IPV6_FLOWINFO_MASK_;
		__builtin_memcpy(fib->ipv6_src, &fr->ip6->saddr, sizeof(fib->ipv6_src));
		__builtin_memcpy(fib->ipv6_dst, &fr->ip6->daddr, sizeof(fib->ipv6_dst));
	} else {
		fib->family = AF_INET;
		fib->tos = fr->ip->tos;
		fib->ipv4_src = fr->ip->saddr;
		fib->ipv4_dst = fr->ip->daddr;
	}
	return bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
}

/* Out of the ENI the route chose: to the neighbour it knows, or to the next hop (the
 * vSwitch gateway) the lookup left in ipv{4,6}_dst, for the kernel to resolve. */
static __always_inline int out_of_eni(const struct frame *fr, int v6,
				      const struct bpf_fib_lookup *fib, long rc)
{
	struct bpf_redir_neigh nh = {};

	/* Header pointers are still valid: nothing changed the packet since frame_of. */
	hop_dec(fr, v6);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		set_macs(fr->eth, fib->dmac, fib->smac);
		count(v6, TW_OUT_REDIRECT, 0);
		return bpf_redirect(fib->ifindex, 0);
	}
	if (v6) {
		nh.nh_family = AF_INET6;
		__builtin_memcpy(nh.ipv6_nh, fib->ipv6_dst, sizeof(nh.ipv6_nh));
	} else {
		nh.nh_family = AF_INET;
		nh.ipv4_nh = fib->ipv4_dst;
	}
	count(v6, TW_OUT_REDIRECT_NEIGH, 0);
	return bpf_redirect_neigh(fib->ifindex, &nh, sizeof(nh), 0);
}

/* uc_tw_pod: a frame from the pod. */
static __always_inline int from_pod(struct __sk_buff *skb, int v6)
{
	struct bpf_fib_lookup fib = {};
	struct frame fr = {};
	union flow f = {};
	struct tw_pod *pod, *peer;
	long rc;

	if (skb->pkt_type != PACKET_HOST || frame_of(skb, v6, 1, &fr))
		return count(v6, TW_OUT_PASS_OTHER, PASS);
	if (v6 && (ll_or_mc(addr_of(&fr, 1, 1)) || ll_or_mc(addr_of(&fr, 1, 0))))
		return count(v6, TW_OUT_PASS_OTHER, PASS);
	/* Only a known pod, from its own veth (no spoofed source gets the short cut). */
	pod = bpf_map_lookup_elem(pods_map(v6), addr_of(&fr, v6, 0));
	if (!pod || pod->veth_ifindex != skb->ifindex || ports_of(&fr, v6))
		return count(v6, TW_OUT_PASS_OTHER, PASS);

	flow_of(&fr, v6, 0, &f);
	if (host_flow(&f, v6))
		return count(v6, TW_OUT_PASS_HOST_FLOW, PASS);
	if (host_dst(&fr, v6)) {
		/* A Service: the host DNATs it, and the replies, from the backend, must come
		 * back through the host to be un-NATed. */
		wildcard(&f, v6);
		remember_in(flows_map(v6), &f);
		return count(v6, TW_OUT_PASS_HOST_DST, PASS);
	}

	peer = bpf_map_lookup_elem(pods_map(v6), addr_of(&fr, v6, 1));
	if (peer) {
		if (peer->veth_ifindex == skb->ifindex)
			return count(v6, TW_OUT_PASS_ROUTE, PASS);
		return into_pod(&fr, v6, peer, TW_OUT_LOCAL);
	}

	rc = route(skb, &fr, v6, &fib);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return count(v6, TW_OUT_PASS_ROUTE, PASS);
	if (fib.ifindex != pod->eni_ifindex)
		return count(v6, TW_OUT_PASS_ROUTE, PASS);
	return out_of_eni(&fr, v6, &fib, rc);
}

/* uc_tw_eni: a frame from the VPC. */
static __always_inline int from_eni(struct __sk_buff *skb, int v6)
{
	struct frame fr = {};
	union flow f = {};
	struct tw_pod *pod;

	if (skb->pkt_type != PACKET_HOST || frame_of(skb, v6, 1, &fr))
		return count(v6, TW_IN_PASS_OTHER, PASS);
	pod = bpf_map_lookup_elem(pods_map(v6), addr_of(&fr, v6, 1));
	if (!pod)
		return count(v6, TW_IN_PASS_NO_POD, PASS);
	/* The host never forwards a link-local source; NDP for the pod's address (ICMPv6
	 * that is not echo) is the host's to answer. */
	if ((v6 && ll_or_mc(addr_of(&fr, 1, 0))) || ports_of(&fr, v6))
		return count(v6, TW_IN_PASS_OTHER, PASS);

	flow_of(&fr, v6, 1, &f);
	if (host_flow(&f, v6))
		return count(v6, TW_IN_PASS_HOST_FLOW, PASS);
	return into_pod(&fr, v6, pod, TW_IN_REDIRECT);
}

/* uc_tw_pod_eg: a frame the host delivers into the pod. A frame frame_of refuses
 * (fragment, IP options) is not one the other programs would short-cut either. */
static __always_inline int to_pod(struct __sk_buff *skb, int v6)
{
	struct frame fr = {};
	union flow f = {};

	if (frame_of(skb, v6, 0, &fr) || ports_of(&fr, v6))
		return PASS;
	flow_of(&fr, v6, 1, &f);
	remember_in(flows_map(v6), &f);
	return PASS;
}

/* A tc program that runs `body(skb, v6)` on IPv4 and IPv6 frames and returns `other` for
 * frames of neither family. */
#define TW_PROGRAM(name, body, other)                           \
	SEC("classifier")                                       \
	int name(struct __sk_buff *skb)                         \
	{                                                       \
		if (skb->protocol == bpf_htons(ETH_P_IPV6))     \
			return body(skb, 1);                    \
		if (skb->protocol != bpf_htons(ETH_P_IP))       \
			return other;                           \
		return body(skb, 0);                            \
	}

TW_PROGRAM(uc_tw_pod, from_pod, count(0, TW_OUT_PASS_OTHER, PASS))
TW_PROGRAM(uc_tw_eni, from_eni, count(0, TW_IN_PASS_NO_POD, PASS))
TW_PROGRAM(uc_tw_pod_eg, to_pod, PASS)

char LICENSE[] SEC("license") = "Dual BSD/GPL";

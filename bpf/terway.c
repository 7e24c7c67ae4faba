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

#include "terway.h"

/* Not ours: TCX_NEXT under tcx, next filter under cls_bpf; with nothing after this
 * program the frame continues up the host stack, as with TC_ACT_OK. */
#define PASS TC_ACT_UNSPEC

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_ICMPV6_ 58
#define ICMPV6_ECHO_REQUEST_ 128
#define ICMPV6_ECHO_REPLY_ 129
#define IPV6_FLOWINFO_MASK_ bpf_htonl(0x0FFFFFFF)
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8
#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct tw_pod);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_pods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__type(key, struct tw_cidr);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_host_cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tw_flow);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_host_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TW_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct tw_addr6);
	__type(value, struct tw_pod);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_pods6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__type(key, struct tw_cidr6);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_host_cidrs6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tw_flow6);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_host_flows6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TW_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_stats6 SEC(".maps");

/* Written by user space only: which interfaces carry which programs, and how. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tw_links SEC(".maps");

/* <linux/icmp.h> drags in libc headers; the echo header is all that is needed. */
struct icmp_echo {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u16 id;
	__u16 seq;
};

static __always_inline int count(__u32 slot, int verdict)
{
	__u64 *c = bpf_map_lookup_elem(&tw_stats, &slot);

	if (c)
		*c += 1; /* per-CPU slot: no atomic needed */
	return verdict;
}

static __always_inline int count6(__u32 slot, int verdict)
{
	__u64 *c = bpf_map_lookup_elem(&tw_stats6, &slot);

	if (c)
		*c += 1;
	return verdict;
}

/* Makes the Ethernet and IPv4 headers and the first 8 bytes after them readable; returns
 * the IPv4 header, or NULL when the frame is not one the fast path handles (IP options,
 * fragments, too short; with `ttl`, a TTL the fast path must not decrement to 0). */
static __always_inline struct iphdr *ipv4_of(struct __sk_buff *skb, void **data_end, int ttl)
{
	const __u32 need = sizeof(struct ethhdr) + sizeof(struct iphdr) + 8;
	void *data = (void *)(long)skb->data;
	struct iphdr *ip;

	*data_end = (void *)(long)skb->data_end;
	if (data + need > *data_end) {
		/* Headers in a fragment of a non-linear skb: make them readable once. */
		if (bpf_skb_pull_data(skb, need))
			return NULL;
		data = (void *)(long)skb->data;
		*data_end = (void *)(long)skb->data_end;
		if (data + need > *data_end)
			return NULL;
	}
	ip = data + sizeof(struct ethhdr);
	if (ip->ihl != 5 || (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) || (ttl && ip->ttl <= 1))
		return NULL;
	return ip;
}

/* The packet's ports (ICMP echo: its identifier as both). Returns -1 for ICMP that is not
 * an echo (errors quote a header the host may have to un-NAT: they keep the host path). */
static __always_inline int ports_of(struct iphdr *ip, __u16 *src, __u16 *dst)
{
	/* ipv4_of guaranteed 8 readable bytes after a 20-byte header. */
	__u16 *p = (void *)(ip + 1);

	switch (ip->protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		*src = p[0];
		*dst = p[1];
		return 0;
	case IPPROTO_ICMP: {
		struct icmp_echo *icmp = (void *)(ip + 1);

		if (icmp->type != ICMP_ECHO && icmp->type != ICMP_ECHOREPLY)
			return -1;
		*src = icmp->id;
		*dst = icmp->id;
		return 0;
	}
	default:
		*src = 0;
		*dst = 0;
		return 0;
	}
}

/* ip_decrease_ttl() of the kernel: TTL - 1 with an incremental checksum update (the
 * header's one's complement sum is unchanged, so CHECKSUM_COMPLETE stays valid). */
static __always_inline void ttl_dec(struct iphdr *ip)
{
	__u32 check = ip->check;

	check += bpf_htons(0x0100);
	ip->check = (__u16)(check + (check >= 0xFFFF));
	ip->ttl--;
}

static __always_inline void set_macs(struct ethhdr *eth, const __u8 *dst, const __u8 *src)
{
	__builtin_memcpy(eth->h_dest, dst, ETH_ALEN);
	__builtin_memcpy(eth->h_source, src, ETH_ALEN);
}

/* Whether the flow (exact, or the pod socket's wildcard) went through the host once. */
static __always_inline int host_flow(struct tw_flow *f)
{
	__u32 peer = f->peer;
	__u16 peer_port = f->peer_port;

	if (bpf_map_lookup_elem(&tw_host_flows, f))
		return 1;
	f->peer = 0;
	f->peer_port = 0;
	if (bpf_map_lookup_elem(&tw_host_flows, f))
		return 1;
	f->peer = peer;
	f->peer_port = peer_port;
	return 0;
}

static __always_inline void remember(struct tw_flow *f)
{
	__u8 one = 1;

	/* Look before writing: most frames of a slow flow find their entry. */
	if (!bpf_map_lookup_elem(&tw_host_flows, f))
		bpf_map_update_elem(&tw_host_flows, f, &one, BPF_ANY);
}

/* ----------------------------------------------------------------------------------- */
/* IPv6: the same decisions as for IPv4, in maps of their own.                          */
/* ----------------------------------------------------------------------------------- */

/* Makes the Ethernet and IPv6 headers and the first 8 bytes after them readable; returns
 * the IPv6 header, or NULL (too short; with `hop`, a hop limit the fast path must not
 * decrement to 0). */
static __always_inline struct ipv6hdr *ipv6_of(struct __sk_buff *skb, void **data_end, int hop)
{
	const __u32 need = sizeof(struct ethhdr) + sizeof(struct ipv6hdr) + 8;
	void *data = (void *)(long)skb->data;
	struct ipv6hdr *ip6;

	*data_end = (void *)(long)skb->data_end;
	if (data + need > *data_end) {
		if (bpf_skb_pull_data(skb, need))
			return NULL;
		data = (void *)(long)skb->data;
		*data_end = (void *)(long)skb->data_end;
		if (data + need > *data_end)
			return NULL;
	}
	ip6 = data + sizeof(struct ethhdr);
	if (ip6->version != 6 || (hop && ip6->hop_limit <= 1))
		return NULL;
	return ip6;
}

/* Link-local (fe80::/10) or multicast (ff00::/8): never forwarded by the host, never ours. */
static __always_inline int ll_or_mc(const struct tw_addr6 *a)
{
	const __u8 *b = (const __u8 *)a;

	return b[0] == 0xff || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80);
}

/* The packet's ports (ICMPv6 echo: its identifier as both). Returns -1 for whatever the
 * fast path leaves to the host: extension headers (fragments, hop-by-hop: MLD), ICMPv6
 * other than echo (NDP, MLD, errors quoting a header NAT may rewrite), other protocols. */
static __always_inline int ports6_of(struct ipv6hdr *ip6, __u16 *src, __u16 *dst)
{
	/* ipv6_of guaranteed 8 readable bytes after the fixed header. */
	__u16 *p = (void *)(ip6 + 1);

	switch (ip6->nexthdr) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		*src = p[0];
		*dst = p[1];
		return 0;
	case IPPROTO_ICMPV6_: {
		struct icmp_echo *icmp = (void *)(ip6 + 1);

		if (icmp->type != ICMPV6_ECHO_REQUEST_ && icmp->type != ICMPV6_ECHO_REPLY_)
			return -1;
		*src = icmp->id;
		*dst = icmp->id;
		return 0;
	}
	default:
		return -1;
	}
}

static __always_inline int host_flow6(struct tw_flow6 *f)
{
	struct tw_addr6 peer = f->peer;
	__u16 peer_port = f->peer_port;

	if (bpf_map_lookup_elem(&tw_host_flows6, f))
		return 1;
	__builtin_memset(&f->peer, 0, sizeof(f->peer));
	f->peer_port = 0;
	if (bpf_map_lookup_elem(&tw_host_flows6, f))
		return 1;
	f->peer = peer;
	f->peer_port = peer_port;
	return 0;
}

static __always_inline void remember6(struct tw_flow6 *f)
{
	__u8 one = 1;

	if (!bpf_map_lookup_elem(&tw_host_flows6, f))
		bpf_map_update_elem(&tw_host_flows6, f, &one, BPF_ANY);
}

static __always_inline int pod6(struct __sk_buff *skb)
{
	struct bpf_fib_lookup fib = {};
	struct tw_cidr6 dst = {};
	struct tw_flow6 f = {};
	struct tw_pod *pod, *peer;
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	void *data_end;
	__u16 sport, dport;
	long rc;

	if (skb->pkt_type != PACKET_HOST)
		return count6(TW_OUT_PASS_OTHER, PASS);
	ip6 = ipv6_of(skb, &data_end, 1);
	if (!ip6)
		return count6(TW_OUT_PASS_OTHER, PASS);
	eth = (void *)(long)skb->data;
	if ((void *)(eth + 1) > data_end)
		return count6(TW_OUT_PASS_OTHER, PASS);
	__builtin_memcpy(&f.pod, &ip6->saddr, sizeof(f.pod));
	__builtin_memcpy(&f.peer, &ip6->daddr, sizeof(f.peer));
	if (ll_or_mc(&f.peer) || ll_or_mc(&f.pod))
		return count6(TW_OUT_PASS_OTHER, PASS);

	pod = bpf_map_lookup_elem(&tw_pods6, &f.pod);
	if (!pod || pod->veth_ifindex != skb->ifindex)
		return count6(TW_OUT_PASS_OTHER, PASS);
	if (ports6_of(ip6, &sport, &dport))
		return count6(TW_OUT_PASS_OTHER, PASS);

	f.pod_port = sport;
	f.peer_port = dport;
	f.proto = ip6->nexthdr;
	if (host_flow6(&f))
		return count6(TW_OUT_PASS_HOST_FLOW, PASS);

	dst.prefixlen = 128;
	dst.addr = f.peer;
	if (bpf_map_lookup_elem(&tw_host_cidrs6, &dst)) {
		__builtin_memset(&f.peer, 0, sizeof(f.peer));
		f.peer_port = 0;
		remember6(&f);
		return count6(TW_OUT_PASS_HOST_DST, PASS);
	}

	peer = bpf_map_lookup_elem(&tw_pods6, &f.peer);
	if (peer) {
		if (peer->veth_ifindex == skb->ifindex)
			return count6(TW_OUT_PASS_ROUTE, PASS);
		ip6->hop_limit--;
		set_macs(eth, peer->pod_mac, peer->veth_mac);
		count6(TW_OUT_LOCAL, 0);
		return bpf_redirect_peer(peer->veth_ifindex, 0);
	}

	fib.family = AF_INET6;
	fib.flowinfo = *(__be32 *)ip6 & IPV6_FLOWINFO_MASK_;
	fib.l4_protocol = ip6->nexthdr;
	fib.sport = sport;
	fib.dport = dport;
	fib.ifindex = skb->ifindex;
	__builtin_memcpy(fib.ipv6_src, &f.pod, sizeof(fib.ipv6_src));
	__builtin_memcpy(fib.ipv6_dst, &f.peer, sizeof(fib.ipv6_dst));
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return count6(TW_OUT_PASS_ROUTE, PASS);
	if (fib.ifindex != pod->eni_ifindex)
		return count6(TW_OUT_PASS_ROUTE, PASS);

	/* Header pointers are still valid: nothing changed the packet since ipv6_of. */
	ip6->hop_limit--;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		set_macs(eth, fib.dmac, fib.smac);
		count6(TW_OUT_REDIRECT, 0);
		return bpf_redirect(fib.ifindex, 0);
	}
	{
		struct bpf_redir_neigh nh = {};

		nh.nh_family = AF_INET6;
		__builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, sizeof(nh.ipv6_nh));
		count6(TW_OUT_REDIRECT_NEIGH, 0);
		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
}

static __always_inline int eni6(struct __sk_buff *skb)
{
	struct tw_flow6 f = {};
	struct tw_pod *pod;
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	void *data_end;
	__u16 sport, dport;

	if (skb->pkt_type != PACKET_HOST)
		return count6(TW_IN_PASS_OTHER, PASS);
	ip6 = ipv6_of(skb, &data_end, 1);
	if (!ip6)
		return count6(TW_IN_PASS_OTHER, PASS);
	eth = (void *)(long)skb->data;
	if ((void *)(eth + 1) > data_end)
		return count6(TW_IN_PASS_OTHER, PASS);
	__builtin_memcpy(&f.pod, &ip6->daddr, sizeof(f.pod));
	__builtin_memcpy(&f.peer, &ip6->saddr, sizeof(f.peer));

	pod = bpf_map_lookup_elem(&tw_pods6, &f.pod);
	if (!pod)
		return count6(TW_IN_PASS_NO_POD, PASS);
	/* The host never forwards a link-local source; NDP for the pod's address (ICMPv6
	 * that is not echo) is the host's to answer. */
	if (ll_or_mc(&f.peer) || ports6_of(ip6, &sport, &dport))
		return count6(TW_IN_PASS_OTHER, PASS);

	f.pod_port = dport;
	f.peer_port = sport;
	f.proto = ip6->nexthdr;
	if (host_flow6(&f))
		return count6(TW_IN_PASS_HOST_FLOW, PASS);

	ip6->hop_limit--;
	set_macs(eth, pod->pod_mac, pod->veth_mac);
	count6(TW_IN_REDIRECT, 0);
	return bpf_redirect_peer(pod->veth_ifindex, 0);
}

static __always_inline int pod_eg6(struct __sk_buff *skb)
{
	struct tw_flow6 f = {};
	struct ipv6hdr *ip6;
	void *data_end;
	__u16 sport, dport;

	ip6 = ipv6_of(skb, &data_end, 0);
	if (!ip6 || ports6_of(ip6, &sport, &dport))
		return PASS;
	__builtin_memcpy(&f.pod, &ip6->daddr, sizeof(f.pod));
	__builtin_memcpy(&f.peer, &ip6->saddr, sizeof(f.peer));
	f.pod_port = dport;
	f.peer_port = sport;
	f.proto = ip6->nexthdr;
	remember6(&f);
	return PASS;
}

SEC("classifier")
int uc_tw_pod(struct __sk_buff *skb)
{
	struct bpf_fib_lookup fib = {};
	struct tw_cidr dst = {};
	struct tw_flow f = {};
	struct tw_pod *pod, *peer;
	struct ethhdr *eth;
	struct iphdr *ip;
	void *data_end;
	__u16 sport, dport;
	long rc;

	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return pod6(skb);
	if (skb->protocol != bpf_htons(ETH_P_IP) || skb->pkt_type != PACKET_HOST)
		return count(TW_OUT_PASS_OTHER, PASS);
	ip = ipv4_of(skb, &data_end, 1);
	if (!ip)
		return count(TW_OUT_PASS_OTHER, PASS);
	eth = (void *)(long)skb->data;
	if ((void *)(eth + 1) > data_end)
		return count(TW_OUT_PASS_OTHER, PASS);

	/* Only a known pod, from its own veth (no spoofed source gets the short cut). */
	pod = bpf_map_lookup_elem(&tw_pods, &ip->saddr);
	if (!pod || pod->veth_ifindex != skb->ifindex)
		return count(TW_OUT_PASS_OTHER, PASS);
	if (ports_of(ip, &sport, &dport))
		return count(TW_OUT_PASS_OTHER, PASS);

	f.pod = ip->saddr;
	f.peer = ip->daddr;
	f.pod_port = sport;
	f.peer_port = dport;
	f.proto = ip->protocol;
	if (host_flow(&f))
		return count(TW_OUT_PASS_HOST_FLOW, PASS);

	dst.prefixlen = 32;
	dst.addr = ip->daddr;
	if (bpf_map_lookup_elem(&tw_host_cidrs, &dst)) {
		/* A Service: the host DNATs it, and the replies, from the backend, must come
		 * back through the host to be un-NATed. */
		f.peer = 0;
		f.peer_port = 0;
		remember(&f);
		return count(TW_OUT_PASS_HOST_DST, PASS);
	}

	peer = bpf_map_lookup_elem(&tw_pods, &ip->daddr);
	if (peer) {
		if (peer->veth_ifindex == skb->ifindex)
			return count(TW_OUT_PASS_ROUTE, PASS);
		ttl_dec(ip);
		set_macs(eth, peer->pod_mac, peer->veth_mac);
		count(TW_OUT_LOCAL, 0);
		return bpf_redirect_peer(peer->veth_ifindex, 0);
	}

	/* The kernel's routing decision, with its rules: as if the host forwarded the packet
	 * arriving on the veth. tot_len = 0: the helper checks the skb against the MTU,
	 * GSO included. */
	fib.family = AF_INET;
	fib.tos = ip->tos;
	fib.l4_protocol = ip->protocol;
	fib.sport = sport;
	fib.dport = dport;
	fib.ifindex = skb->ifindex;
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = ip->daddr;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return count(TW_OUT_PASS_ROUTE, PASS);
	if (fib.ifindex != pod->eni_ifindex)
		return count(TW_OUT_PASS_ROUTE, PASS);

	ttl_dec(ip);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		set_macs(eth, fib.dmac, fib.smac);
		count(TW_OUT_REDIRECT, 0);
		return bpf_redirect(fib.ifindex, 0);
	}
	{
		/* The lookup left the next hop (the vSwitch gateway) in ipv4_dst. */
		struct bpf_redir_neigh nh = {};

		nh.nh_family = AF_INET;
		nh.ipv4_nh = fib.ipv4_dst;
		count(TW_OUT_REDIRECT_NEIGH, 0);
		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
}

SEC("classifier")
int uc_tw_eni(struct __sk_buff *skb)
{
	struct tw_flow f = {};
	struct tw_pod *pod;
	struct ethhdr *eth;
	struct iphdr *ip;
	void *data_end;
	__u16 sport, dport;

	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return eni6(skb);
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return count(TW_IN_PASS_NO_POD, PASS);
	if (skb->pkt_type != PACKET_HOST)
		return count(TW_IN_PASS_OTHER, PASS);
	ip = ipv4_of(skb, &data_end, 1);
	if (!ip)
		return count(TW_IN_PASS_OTHER, PASS);
	eth = (void *)(long)skb->data;
	if ((void *)(eth + 1) > data_end)
		return count(TW_IN_PASS_OTHER, PASS);

	pod = bpf_map_lookup_elem(&tw_pods, &ip->daddr);
	if (!pod)
		return count(TW_IN_PASS_NO_POD, PASS);
	if (ports_of(ip, &sport, &dport))
		return count(TW_IN_PASS_OTHER, PASS);

	f.pod = ip->daddr;
	f.peer = ip->saddr;
	f.pod_port = dport;
	f.peer_port = sport;
	f.proto = ip->protocol;
	if (host_flow(&f))
		return count(TW_IN_PASS_HOST_FLOW, PASS);

	ttl_dec(ip);
	set_macs(eth, pod->pod_mac, pod->veth_mac);
	count(TW_IN_REDIRECT, 0);
	return bpf_redirect_peer(pod->veth_ifindex, 0);
}

SEC("classifier")
int uc_tw_pod_eg(struct __sk_buff *skb)
{
	struct tw_flow f = {};
	struct iphdr *ip;
	void *data_end;
	__u16 sport, dport;

	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return pod_eg6(skb);
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return PASS;
	ip = ipv4_of(skb, &data_end, 0);
	/* A frame ipv4_of refuses (fragment, IP options) is not one the other programs would
	 * short-cut either. */
	if (!ip || ports_of(ip, &sport, &dport))
		return PASS;
	f.pod = ip->daddr;
	f.peer = ip->saddr;
	f.pod_port = dport;
	f.peer_port = sport;
	f.proto = ip->protocol;
	remember(&f);
	return PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

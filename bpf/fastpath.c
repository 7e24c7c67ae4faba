// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Same-node fast path of the flannel bridge datapath.
 *
 * Attached at tc ingress of every pod's host-side veth, i.e. it sees each frame the pod
 * sends. Pods of one node share one bridge and one subnet, so a pod reaches a neighbour
 * pod at layer 2: it resolves the neighbour's MAC by ARP and sends the frame to that MAC,
 * and the bridge would forward it unchanged to the neighbour's port. This program does the
 * same forwarding decision without the bridge: if the destination IPv4 address belongs to
 * a local pod AND the frame is addressed to that pod's MAC, the frame is handed to the
 * pod's interface with bpf_redirect_peer (straight into the pod's netns, no second pass
 * through the host). Because the result is exactly what the bridge would deliver, no MAC
 * rewrite and no TTL decrement happen (the bridge does neither). Everything else (ARP,
 * IPv6, other nodes, services, the host, frames to the gateway MAC) goes on to the bridge.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "fastpath.h"

/* "Not mine, carry on": TC_ACT_UNSPEC is TCX_NEXT under tcx and "next filter" under a
 * direct-action cls_bpf filter, so a program attached after this one (NetworkPolicy,
 * another chained plugin) still sees the frame, and with none the frame continues to the
 * bridge exactly as with TC_ACT_OK. TC_ACT_OK would end the tcx chain here. */
#define PASS TC_ACT_UNSPEC

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fastpath_stats SEC(".maps");

/* Written by user space only: which interfaces carry the program and how (tcx or netlink),
 * so a restarted agent or `unicni uninstall` finds netlink filters, which cannot be pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fastpath_links SEC(".maps");

static __always_inline int count(__u32 slot, int verdict)
{
	__u64 *c = bpf_map_lookup_elem(&fastpath_stats, &slot);

	if (c)
		*c += 1; /* per-CPU slot: no atomic needed */
	return verdict;
}

SEC("classifier")
int uc_fastpath(struct __sk_buff *skb)
{
	const __u32 need = sizeof(struct ethhdr) + sizeof(struct iphdr);
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct endpoint *ep;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return count(STAT_PASS_NOT_IPV4, PASS);

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + need > data_end) {
		/* Headers in a fragment of a non-linear skb: make them readable once. */
		if (bpf_skb_pull_data(skb, need))
			return count(STAT_PASS_NOT_IPV4, PASS);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		if (data + need > data_end)
			return count(STAT_PASS_NOT_IPV4, PASS);
	}
	eth = data;
	ip = data + sizeof(*eth);

	ep = bpf_map_lookup_elem(&endpoints, &ip->daddr);
	if (!ep)
		return count(STAT_PASS_NO_ENDPOINT, PASS);

	/* Layer-2 check: only what the bridge would deliver to that pod's port. */
	if (eth->h_dest[0] != ep->mac[0] || eth->h_dest[1] != ep->mac[1] ||
	    eth->h_dest[2] != ep->mac[2] || eth->h_dest[3] != ep->mac[3] ||
	    eth->h_dest[4] != ep->mac[4] || eth->h_dest[5] != ep->mac[5])
		return count(STAT_PASS_OTHER_MAC, PASS);

	/* A frame back into its own port is the bridge's (hairpin) business. */
	if (ep->ifindex == skb->ifindex)
		return count(STAT_PASS_OTHER_MAC, PASS);

	count(STAT_REDIRECT, 0);
	return bpf_redirect_peer(ep->ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

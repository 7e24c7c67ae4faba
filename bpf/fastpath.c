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
 *
 * One exception keeps NAT correct: a flow the host has forwarded to a pod (a Service
 * connection DNATed by kube-proxy to a backend on this node, for instance) must send its
 * replies back through the host too, or the reverse NAT (done by conntrack on the bridge
 * with br_netfilter) never happens and the client drops the reply. uc_fastpath_egress,
 * attached at tc egress of the same veths, sees exactly the frames that reached a pod the
 * slow way (redirected ones skip it) and remembers their reverse flow in `host_flows`;
 * the ingress program leaves those flows alone.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "common.h"
#include "fastpath.h"

PINNED_MAP(BPF_MAP_TYPE_HASH, 16384, __u32, struct endpoint) endpoints SEC(".maps");
STATS_MAP(STAT_MAX) fastpath_stats SEC(".maps");
LINKS_MAP(16384) fastpath_links SEC(".maps");
PINNED_MAP(BPF_MAP_TYPE_LRU_HASH, 65536, struct flow_key, __u8) host_flows SEC(".maps");

/* Fills k with the flow of the IPv4 packet at ip; ports stay 0 when they are not in the
 * linear data or the packet is a non-first fragment. */
static __always_inline void flow_of(struct iphdr *ip, void *data_end, struct flow_key *k)
{
	void *l4 = (void *)ip + ip->ihl * 4;

	k->saddr = ip->saddr;
	k->daddr = ip->daddr;
	k->proto = ip->protocol;
	if (ip->frag_off & bpf_htons(0x1fff))
		return;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		__u16 *ports = l4;

		if ((void *)(ports + 2) > data_end)
			return;
		k->sport = ports[0];
		k->dport = ports[1];
	} else if (ip->protocol == IPPROTO_ICMP) {
		struct icmp_echo *icmp = l4;

		if ((void *)(icmp + 1) > data_end)
			return;
		if (icmp->type == ICMP_ECHO || icmp->type == ICMP_ECHOREPLY) {
			k->sport = icmp->id;
			k->dport = icmp->id;
		}
	}
}

static __always_inline int count(__u32 slot, int verdict)
{
	return count_in(&fastpath_stats, slot, verdict);
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

	data = pull_headers(skb, need, &data_end);
	if (!data)
		return count(STAT_PASS_NOT_IPV4, PASS);
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

	{
		struct flow_key k = {};

		flow_of(ip, data_end, &k);
		if (bpf_map_lookup_elem(&host_flows, &k))
			return count(STAT_PASS_HOST_FLOW, PASS);
	}

	count(STAT_REDIRECT, 0);
	return bpf_redirect_peer(ep->ifindex, 0);
}

/* tc egress of a pod's host veth: frames on their way into the pod that came through the
 * bridge or the host. Remembers the reverse flow so its replies also take that way. */
SEC("classifier")
int uc_fastpath_eg(struct __sk_buff *skb)
{
	const __u32 need = sizeof(struct ethhdr) + sizeof(struct iphdr);
	struct flow_key k = {}, r = {};
	void *data, *data_end;
	struct iphdr *ip;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return PASS;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + need > data_end)
		return PASS;
	ip = data + sizeof(struct ethhdr);
	flow_of(ip, data_end, &k);
	r.saddr = k.daddr;
	r.daddr = k.saddr;
	r.sport = k.dport;
	r.dport = k.sport;
	r.proto = k.proto;
	remember_in(&host_flows, &r);
	return PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

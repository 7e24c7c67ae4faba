// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Kubernetes NetworkPolicy enforcement for both backends.
 *
 * Attached at tc on every pod's host-side veth, in both directions: tc ingress sees what
 * the pod sends (the pod's egress), tc egress what is delivered to it (the pod's ingress).
 * Both programs run the same decision, which only looks at addresses, so it does not matter
 * where a packet is seen: a flow between two pods of one node is checked against the
 * sender's egress and the receiver's ingress already at the sender's veth (before a fast
 * path could redirect it past the receiver's veth), and again, on its conntrack entry, at
 * the receiver's.
 *
 * Per packet:
 *   1. Not IP: pass. NDP/MLD, non-first fragments: pass.
 *   2. Neither address is a local pod (`policy_pods`): pass, untracked.
 *   3. A conntrack entry for the packet's flow (`policy_ct`; a TCP SYN without ACK skips
 *      this step): pass. Allowed flows have entries in both directions, so replies pass, and
 *      established flows survive policy updates. An ICMP error passes when the flow it
 *      quotes has an entry.
 *   4. To or from one of the node's own addresses (`policy_node`): pass, untracked
 *      (probes, and Kubernetes' "traffic to and from the node is always allowed").
 *      From a local pod to a Service address (`policy_services`): pass and track (so the
 *      reverse-translated replies come back): the host translates it to a backend after
 *      this hook, and the egress decision is made on the translated packet, at the
 *      backend's veth (a local backend) or at the node's uplink (a remote one), where the
 *      programs are attached too.
 *   5. The source pod isolated for egress: the remote-address trie
 *      `policy_v{4,6}_egress` keyed {source, destination} gives a port set; no entry, or
 *      no matching {protocol, destination port} in `policy_ports`: drop.
 *      The destination pod isolated for ingress: the same with `policy_v{4,6}_ingress`
 *      keyed {destination, source}.
 *   6. Allowed: conntrack entries for both directions, pass.
 * Drops are TC_ACT_SHOT and counted in the per-CPU `policy_stats`.
 *
 * "Pass" is TC_ACT_UNSPEC: the next program on the hook (the fast path, attached after
 * this one) still sees the packet; with none the packet continues as with TC_ACT_OK.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "common.h"
#include "policy.h"

#define DROP TC_ACT_SHOT

#define PROTO_ICMPV6 58
#define PROTO_SCTP 132
#define POL_LOCAL 0x80000000u

/* An LPM trie (the member order is the BTF layout the pins were made with). */
#define POL_TRIE(entries, key_type, value_type)                      \
	struct {                                                     \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                 \
		__uint(max_entries, entries);                        \
		__uint(map_flags, BPF_F_NO_PREALLOC);                \
		__type(key, key_type);                               \
		__type(value, value_type);                           \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                 \
	}

PINNED_MAP(BPF_MAP_TYPE_HASH, 65536, struct pol_addr, __u32) policy_pods SEC(".maps");
PINNED_MAP(BPF_MAP_TYPE_HASH, 1024, struct pol_addr, __u32) policy_node SEC(".maps");
POL_TRIE(1048576, struct pol_lpm4, struct pol_rule) policy_v4_ingress SEC(".maps");
POL_TRIE(1048576, struct pol_lpm4, struct pol_rule) policy_v4_egress SEC(".maps");
POL_TRIE(1048576, struct pol_lpm6, struct pol_rule) policy_v6_ingress SEC(".maps");
POL_TRIE(1048576, struct pol_lpm6, struct pol_rule) policy_v6_egress SEC(".maps");
POL_TRIE(262144, struct pol_port_key, __u32) policy_ports SEC(".maps");
PINNED_MAP(BPF_MAP_TYPE_LRU_HASH, 262144, struct pol_ct_key, struct pol_ct_value) policy_ct SEC(".maps");
STATS_MAP(POL_STAT_MAX) policy_stats SEC(".maps");
POL_TRIE(64, struct pol_svc_key, __u32) policy_services SEC(".maps");
LINKS_MAP(65536) policy_links SEC(".maps");

/* Headers, spelled out: the uapi ones drag in libc headers under -target bpf. */
struct ip4_hdr {
	__u8 ver_ihl;
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
};

struct ip6_hdr {
	__u32 vtc_flow;
	__u16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct tcp_head {
	__u16 sport;
	__u16 dport;
	__u32 seq;
	__u32 ack;
	__u8 doff;
	__u8 flags;
};
#define TCP_SYN 0x02
#define TCP_ACK 0x10

struct pkt {
	struct pol_ct_key k;   /* the packet's flow */
	struct pol_ct_key rel; /* ICMP errors: the flow the error quotes */
	__u16 port;            /* destination port for the policy (network order), 0 if none */
	__u8 v6;
	__u8 syn; /* TCP SYN without ACK: a new connection, never let through by conntrack */
};

enum parse_result {
	PARSE_OK,
	PARSE_NOT_IP,
	PARSE_CONTROL,   /* pass without looking further */
	PARSE_ICMP_ERR,  /* an ICMP error: pkt.rel is the quoted flow */
};

static __always_inline int count(__u32 slot, int verdict)
{
	return count_in(&policy_stats, slot, verdict);
}

static __always_inline void map4(__u8 *a, __u32 addr)
{
	__builtin_memset(a, 0, 10);
	a[10] = 0xff;
	a[11] = 0xff;
	__builtin_memcpy(a + 12, &addr, 4);
}

/* Ports of a TCP/UDP/SCTP header at off, or the identifier of an ICMP echo; 0 otherwise. */
static __always_inline void l4_ports(struct __sk_buff *skb, __u32 off, __u8 proto, int v6,
				     __u16 *sport, __u16 *dport)
{
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == PROTO_SCTP) {
		__u16 ports[2];

		if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) == 0) {
			*sport = ports[0];
			*dport = ports[1];
		}
	} else if ((!v6 && proto == IPPROTO_ICMP) || (v6 && proto == PROTO_ICMPV6)) {
		struct icmp_echo h;

		if (bpf_skb_load_bytes(skb, off, &h, sizeof(h)) == 0 &&
		    ((!v6 && (h.type == 8 || h.type == 0)) || (v6 && (h.type == 128 || h.type == 129)))) {
			*sport = h.id;
			*dport = h.id;
		}
	}
}

/* The flow quoted by an ICMP error whose body (the offending packet's header) is at off. */
static __always_inline void quoted_flow(struct __sk_buff *skb, __u32 off, int v6,
					struct pol_ct_key *rel)
{
	if (v6) {
		struct ip6_hdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)))
			return;
		__builtin_memcpy(rel->saddr, ip.saddr, 16);
		__builtin_memcpy(rel->daddr, ip.daddr, 16);
		rel->proto = ip.nexthdr;
		l4_ports(skb, off + sizeof(ip), ip.nexthdr, 1, &rel->sport, &rel->dport);
	} else {
		struct ip4_hdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)))
			return;
		map4(rel->saddr, ip.saddr);
		map4(rel->daddr, ip.daddr);
		rel->proto = ip.protocol;
		l4_ports(skb, off + (ip.ver_ihl & 0xf) * 4, ip.protocol, 0, &rel->sport,
			 &rel->dport);
	}
}

static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	__u32 off = ETH_HLEN;
	__u8 proto;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct ip4_hdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)))
			return PARSE_CONTROL; /* truncated: the stack drops it */
		map4(p->k.saddr, ip.saddr);
		map4(p->k.daddr, ip.daddr);
		proto = ip.protocol;
		p->k.proto = proto;
		/* A non-first fragment carries no ports; its first fragment was decided. */
		if (ip.frag_off & bpf_htons(0x1fff))
			return PARSE_CONTROL;
		off += (ip.ver_ihl & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ip6_hdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)))
			return PARSE_CONTROL;
		__builtin_memcpy(p->k.saddr, ip.saddr, 16);
		__builtin_memcpy(p->k.daddr, ip.daddr, 16);
		p->v6 = 1;
		proto = ip.nexthdr;
		off += sizeof(ip);
		/* Extension headers. Past four, or one that cannot be read, the packet is judged
		 * with the extension header as its protocol: only "any protocol" rules allow it. */
#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (proto == 0 || proto == 43 || proto == 60) {
				__u8 h[2];

				if (bpf_skb_load_bytes(skb, off, h, sizeof(h)))
					break;
				proto = h[0];
				off += (h[1] + 1) * 8;
			} else if (proto == 44) {
				struct {
					__u8 nexthdr;
					__u8 reserved;
					__u16 frag;
					__u32 id;
				} f;

				if (bpf_skb_load_bytes(skb, off, &f, sizeof(f)))
					break;
				proto = f.nexthdr;
				off += sizeof(f);
				if (f.frag & bpf_htons(0xfff8)) {
					p->k.proto = proto;
					return PARSE_CONTROL;
				}
			} else {
				break;
			}
		}
		p->k.proto = proto;
	} else {
		return PARSE_NOT_IP;
	}

	if (proto == IPPROTO_TCP) {
		struct tcp_head t;

		if (bpf_skb_load_bytes(skb, off, &t, sizeof(t)) == 0) {
			p->k.sport = t.sport;
			p->k.dport = t.dport;
			p->port = t.dport;
			p->syn = (t.flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
		}
		return PARSE_OK;
	}
	if ((!p->v6 && proto == IPPROTO_ICMP) || (p->v6 && proto == PROTO_ICMPV6)) {
		struct icmp_echo h;

		if (bpf_skb_load_bytes(skb, off, &h, sizeof(h)))
			return PARSE_OK;
		if (p->v6) {
			/* MLD (130-132, 143) and NDP (133-137): the link's own machinery. */
			if ((h.type >= 130 && h.type <= 137) || h.type == 143)
				return PARSE_CONTROL;
			if (h.type >= 1 && h.type <= 4) {
				quoted_flow(skb, off + 8, 1, &p->rel);
				return PARSE_ICMP_ERR;
			}
		} else if (h.type == 3 || h.type == 4 || h.type == 11 || h.type == 12) {
			quoted_flow(skb, off + 8, 0, &p->rel);
			return PARSE_ICMP_ERR;
		}
	}
	l4_ports(skb, off, proto, p->v6, &p->k.sport, &p->k.dport);
	if (proto == IPPROTO_UDP || proto == PROTO_SCTP)
		p->port = p->k.dport;
	return PARSE_OK;
}

static __always_inline int ct_hit(struct pol_ct_key *k, __u64 now)
{
	struct pol_ct_value *v = bpf_map_lookup_elem(&policy_ct, k);
	__u64 age, limit;

	if (!v)
		return 0;
	age = now - v->seen_ns;
	limit = k->proto == IPPROTO_TCP ? POL_CT_TCP_NS : POL_CT_OTHER_NS;
	if (age > limit)
		return 0;
	if (age > POL_CT_REFRESH_NS)
		v->seen_ns = now;
	return 1;
}

static __always_inline void ct_add(struct pol_ct_key *k, __u64 now)
{
	struct pol_ct_value v = { .seen_ns = now };
	struct pol_ct_key r = {};

	__builtin_memcpy(r.saddr, k->daddr, 16);
	__builtin_memcpy(r.daddr, k->saddr, 16);
	r.sport = k->dport;
	r.dport = k->sport;
	r.proto = k->proto;
	bpf_map_update_elem(&policy_ct, k, &v, BPF_ANY);
	bpf_map_update_elem(&policy_ct, &r, &v, BPF_ANY);
}

static __always_inline int ports_allow(struct pol_rule *r, struct pkt *p)
{
	struct pol_port_key pk = {};

	if (!r)
		return 0;
	if (r->flags & POL_RULE_ANY)
		return 1;
	pk.prefixlen = 64;
	pk.port_set = r->port_set;
	pk.proto = p->k.proto;
	pk.port = p->port;
	return bpf_map_lookup_elem(&policy_ports, &pk) != 0;
}

/* Whether the rules of `local` (isolated in that direction) allow the flow with `remote`:
 * the trie of the direction and family, keyed {local, remote}. */
static __always_inline int rules_allow(struct pkt *p, const __u8 *local, const __u8 *remote,
				       void *trie4, void *trie6)
{
	struct pol_rule *r;

	if (p->v6) {
		struct pol_lpm6 k = { .prefixlen = 256 };

		__builtin_memcpy(k.local, local, 16);
		__builtin_memcpy(k.remote, remote, 16);
		r = bpf_map_lookup_elem(trie6, &k);
	} else {
		struct pol_lpm4 k = { .prefixlen = 64 };

		__builtin_memcpy(&k.local, local + 12, 4);
		__builtin_memcpy(&k.remote, remote + 12, 4);
		r = bpf_map_lookup_elem(trie4, &k);
	}
	return ports_allow(r, p);
}

static __always_inline int egress_allows(struct pkt *p)
{
	return rules_allow(p, p->k.saddr, p->k.daddr, &policy_v4_egress, &policy_v6_egress);
}

static __always_inline int ingress_allows(struct pkt *p)
{
	return rules_allow(p, p->k.daddr, p->k.saddr, &policy_v4_ingress, &policy_v6_ingress);
}

static __always_inline int same_addr(const __u8 *a, const __u8 *b)
{
	__u64 a0, a1, b0, b1;

	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	return a0 == b0 && a1 == b1;
}

static __always_inline int enforce(struct __sk_buff *skb)
{
	struct pkt p = {};
	__u32 *src_pod, *dst_pod;
	__u32 src_flags, dst_flags;
	__u64 now;
	int r;

	r = parse(skb, &p);
	if (r == PARSE_NOT_IP)
		return count(POL_STAT_NOT_IP, PASS);
	if (r == PARSE_CONTROL)
		return count(POL_STAT_CONTROL, PASS);

	/* Flags read right away (bit 31 marks "a local pod"): clang would otherwise test both
	 * lookups at once by OR-ing the pointers, which the verifier refuses. */
	src_flags = 0;
	dst_flags = 0;
	src_pod = bpf_map_lookup_elem(&policy_pods, p.k.saddr);
	if (src_pod)
		src_flags = *src_pod | POL_LOCAL;
	dst_pod = bpf_map_lookup_elem(&policy_pods, p.k.daddr);
	if (dst_pod)
		dst_flags = *dst_pod | POL_LOCAL;
	if (!((src_flags | dst_flags) & POL_LOCAL))
		return count(POL_STAT_NO_POD, PASS);
	/* A pod cannot block itself (hairpin through a Service). */
	if (same_addr(p.k.saddr, p.k.daddr))
		return count(POL_STAT_CONTROL, PASS);

	now = bpf_ktime_get_ns();
	if (r == PARSE_ICMP_ERR && ct_hit(&p.rel, now))
		return count(POL_STAT_CONTROL, PASS);
	if (!p.syn && ct_hit(&p.k, now))
		return count(POL_STAT_ESTABLISHED, PASS);
	if (bpf_map_lookup_elem(&policy_node, p.k.saddr) ||
	    bpf_map_lookup_elem(&policy_node, p.k.daddr))
		return count(POL_STAT_NODE, PASS);
	if (src_flags & POL_LOCAL) {
		struct pol_svc_key sk = { .prefixlen = 128 };

		__builtin_memcpy(sk.addr, p.k.daddr, 16);
		if (bpf_map_lookup_elem(&policy_services, &sk)) {
			ct_add(&p.k, now);
			return count(POL_STAT_SERVICE, PASS);
		}
	}

	if ((src_flags & POL_ISOLATED_EGRESS) && !egress_allows(&p))
		return count(POL_STAT_DROP_EGRESS, DROP);
	if ((dst_flags & POL_ISOLATED_INGRESS) && !ingress_allows(&p))
		return count(POL_STAT_DROP_INGRESS, DROP);
	ct_add(&p.k, now);
	return count(POL_STAT_NEW, PASS);
}

/* tc ingress of a pod's host veth: what the pod sends. */
SEC("classifier")
int uc_pol_from_pod(struct __sk_buff *skb)
{
	return enforce(skb);
}

/* tc egress of a pod's host veth: what is delivered to the pod. */
SEC("classifier")
int uc_pol_to_pod(struct __sk_buff *skb)
{
	return enforce(skb);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

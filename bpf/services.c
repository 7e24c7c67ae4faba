// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * ClusterIP Service load balancing at the socket layer (docs/services.md).
 *
 * cgroup sock_addr programs on the root cgroup v2, run for every socket of the kernel at
 * the moment an address is handed to or from the socket layer, before any packet exists:
 *
 *   connect4/6     TCP and connected UDP: a connect() to a frontend (ClusterIP, port,
 *                  protocol in `svc_frontends`) is turned into a connect() to one of its
 *                  backends. The socket is then connected to the backend pod itself: no
 *                  per-packet translation, the flow keeps that backend for its lifetime
 *                  whatever happens to the endpoint list, and everything after the socket
 *                  (NetworkPolicy, the fast paths) sees the real backend.
 *   sendmsg4/6     unconnected UDP: each datagram to a frontend goes to a backend; the
 *                  socket keeps the backend it got first (`svc_udp_flows`) while that
 *                  backend exists, terminating or not.
 *   recvmsg4/6     unconnected UDP: a reply from a backend is shown as coming from the
 *   getpeername4/6 frontend, and getpeername() of a connected socket shows the frontend
 *                  (`svc_rev`, written when the backend was chosen).
 *
 * Only sockets of registered network namespaces are touched: the node's pods
 * (`svc_pods`, keyed by netns cookie). Several nodes of a lab share one kernel and each
 * attaches its own copy of these programs; a socket of the host, of another node's pods or
 * of anything else runs through every copy unchanged.
 *
 * Backend choice: ClientIP affinity first (`svc_affinity`, by the client's netns cookie,
 * while it is younger than the timeout and its backend is still there and not
 * terminating), otherwise a random slot of the frontend (`svc_slots`, the ready
 * backends). A frontend without backends refuses the connect()/sendmsg() (EPERM), as
 * kube-proxy rejects it.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "common.h"
#include "services.h"

#define ALLOW 1
#define REFUSE 0

/* A hash map of entries user space writes: memory only for what is there. */
#define SVC_HASH(entries, key_type, value_type)                      \
	struct {                                                     \
		__uint(type, BPF_MAP_TYPE_HASH);                     \
		__uint(max_entries, entries);                        \
		__uint(map_flags, BPF_F_NO_PREALLOC);                \
		__type(key, key_type);                               \
		__type(value, value_type);                           \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                 \
	}

SVC_HASH(65536, __u64, __u32) svc_pods SEC(".maps");
SVC_HASH(131072, struct svc_key, struct svc_value) svc_frontends SEC(".maps");
SVC_HASH(524288, struct svc_slot_key, __u32) svc_slots SEC(".maps");
SVC_HASH(524288, __u32, struct svc_backend) svc_backends SEC(".maps");
PINNED_MAP(BPF_MAP_TYPE_LRU_HASH, 65536, struct svc_aff_key, struct svc_aff_value) svc_affinity SEC(".maps");
PINNED_MAP(BPF_MAP_TYPE_LRU_HASH, 65536, struct svc_flow_key, struct svc_flow_value) svc_udp_flows SEC(".maps");
PINNED_MAP(BPF_MAP_TYPE_LRU_HASH, 131072, struct svc_rev_key, struct svc_rev_value) svc_rev SEC(".maps");
STATS_MAP(SVC_STAT_MAX) svc_stats SEC(".maps");

static __always_inline void count(__u32 slot)
{
	count_in(&svc_stats, slot, 0);
}

/* Whether the socket belongs to one of this node's pods. */
static __always_inline int pod_socket(struct bpf_sock_addr *ctx)
{
	__u64 ns = bpf_get_netns_cookie(ctx);

	return bpf_map_lookup_elem(&svc_pods, &ns) != NULL;
}

/* The address in ctx->user_ip{4,6} as 16 bytes (IPv4 mapped). */
static __always_inline void read_addr(struct bpf_sock_addr *ctx, int v6, __u32 a[4])
{
	if (v6) {
		a[0] = ctx->user_ip6[0];
		a[1] = ctx->user_ip6[1];
		a[2] = ctx->user_ip6[2];
		a[3] = ctx->user_ip6[3];
	} else {
		a[0] = 0;
		a[1] = 0;
		a[2] = bpf_htonl(0xffff);
		a[3] = ctx->user_ip4;
	}
}

static __always_inline void write_addr(struct bpf_sock_addr *ctx, int v6, const __u32 a[4],
				       __u16 port)
{
	if (v6) {
		ctx->user_ip6[0] = a[0];
		ctx->user_ip6[1] = a[1];
		ctx->user_ip6[2] = a[2];
		ctx->user_ip6[3] = a[3];
	} else {
		ctx->user_ip4 = a[3];
	}
	ctx->user_port = port;
}

/* A backend for a new connection or flow of `svc`, its id in *id; NULL when there is none. */
static __always_inline struct svc_backend *pick(struct bpf_sock_addr *ctx,
						 const struct svc_value *svc, __u32 *id)
{
	struct svc_aff_key ak = {};
	struct svc_aff_value *av;
	struct svc_backend *b;
	struct svc_slot_key sk;
	__u64 now = 0;
	__u32 *bid;

	if (svc->affinity_sec) {
		ak.client = bpf_get_netns_cookie(ctx);
		ak.svc_id = svc->id;
		now = bpf_ktime_get_ns();
		av = bpf_map_lookup_elem(&svc_affinity, &ak);
		if (av && now - av->last_ns <= (__u64)svc->affinity_sec * 1000000000ULL) {
			__u32 kept = av->backend_id;

			b = bpf_map_lookup_elem(&svc_backends, &kept);
			if (b && b->svc_id == svc->id && !(b->flags & SVC_BACKEND_TERMINATING)) {
				av->last_ns = now;
				*id = kept;
				count(SVC_STAT_AFFINITY);
				return b;
			}
		}
	}
	if (!svc->count)
		return NULL;
	sk.id = svc->id;
	sk.slot = bpf_get_prandom_u32() % svc->count;
	bid = bpf_map_lookup_elem(&svc_slots, &sk);
	b = bid ? bpf_map_lookup_elem(&svc_backends, bid) : NULL;
	if (!b) {
		/* User space shrank the slots (or dropped the backend) between our reads of
		 * the count and the slot: slot 0 exists while the frontend has any backend. */
		sk.slot = 0;
		bid = bpf_map_lookup_elem(&svc_slots, &sk);
		b = bid ? bpf_map_lookup_elem(&svc_backends, bid) : NULL;
		if (!b)
			return NULL;
	}
	*id = *bid;
	if (svc->affinity_sec) {
		struct svc_aff_value nv = { .last_ns = now, .backend_id = *id };

		bpf_map_update_elem(&svc_affinity, &ak, &nv, BPF_ANY);
	}
	return b;
}

/* Remembers, for the socket, which frontend the backend stands for. */
static __always_inline void remember_rev(struct bpf_sock_addr *ctx, const struct svc_backend *b,
					 const struct svc_key *front)
{
	struct svc_rev_key rk = {};
	struct svc_rev_value rv = {};
	struct svc_rev_value *cur;

	rk.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(rk.addr, b->addr, sizeof(rk.addr));
	rk.port = b->port;
	rk.proto = front->proto;
	cur = bpf_map_lookup_elem(&svc_rev, &rk);
	if (cur && cur->port == front->port && cur->addr[0] == front->addr[0] &&
	    cur->addr[1] == front->addr[1] && cur->addr[2] == front->addr[2] &&
	    cur->addr[3] == front->addr[3])
		return;
	__builtin_memcpy(rv.addr, front->addr, sizeof(rv.addr));
	rv.port = front->port;
	bpf_map_update_elem(&svc_rev, &rk, &rv, BPF_ANY);
}

/* The frontend a pod socket addresses, NULL when it is not one; fills `key`. */
static __always_inline struct svc_value *frontend(struct bpf_sock_addr *ctx, int v6, __u8 proto,
						  struct svc_key *key)
{
	if (!pod_socket(ctx))
		return NULL;
	read_addr(ctx, v6, key->addr);
	key->port = (__u16)ctx->user_port;
	key->proto = proto;
	return bpf_map_lookup_elem(&svc_frontends, key);
}

static __always_inline int do_connect(struct bpf_sock_addr *ctx, int v6)
{
	struct svc_key key = {};
	struct svc_value *svc;
	struct svc_backend *b;
	__u32 proto = ctx->protocol;
	__u32 id = 0;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return ALLOW;
	svc = frontend(ctx, v6, proto, &key);
	if (!svc)
		return ALLOW;
	b = pick(ctx, svc, &id);
	if (!b) {
		count(SVC_STAT_NO_BACKEND);
		return REFUSE;
	}
	write_addr(ctx, v6, b->addr, b->port);
	remember_rev(ctx, b, &key);
	count(SVC_STAT_CONNECT);
	return ALLOW;
}

static __always_inline int do_sendmsg(struct bpf_sock_addr *ctx, int v6)
{
	struct svc_flow_key fk = {};
	struct svc_flow_value *f;
	struct svc_key key = {};
	struct svc_value *svc;
	struct svc_backend *b = NULL;
	__u32 id = 0;

	svc = frontend(ctx, v6, IPPROTO_UDP, &key);
	if (!svc)
		return ALLOW;
	fk.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(fk.addr, key.addr, sizeof(fk.addr));
	fk.port = key.port;
	fk.proto = IPPROTO_UDP;
	f = bpf_map_lookup_elem(&svc_udp_flows, &fk);
	if (f && f->svc_id == svc->id) {
		id = f->backend_id;
		b = bpf_map_lookup_elem(&svc_backends, &id);
		if (b && b->svc_id != svc->id)
			b = NULL;
		if (b)
			count(SVC_STAT_UDP_FLOW);
	}
	if (!b) {
		struct svc_flow_value nf = {};

		b = pick(ctx, svc, &id);
		if (!b) {
			count(SVC_STAT_NO_BACKEND);
			return REFUSE;
		}
		nf.backend_id = id;
		nf.svc_id = svc->id;
		bpf_map_update_elem(&svc_udp_flows, &fk, &nf, BPF_ANY);
	}
	write_addr(ctx, v6, b->addr, b->port);
	remember_rev(ctx, b, &key);
	count(SVC_STAT_SENDMSG);
	return ALLOW;
}

/* recvmsg and getpeername: the peer address the application sees. Only sockets this
 * program sent to a backend have `svc_rev` entries (keyed by their unique cookie), so no
 * netns check is needed. */
static __always_inline int do_rev(struct bpf_sock_addr *ctx, int v6, __u8 proto)
{
	struct svc_rev_key rk = {};
	struct svc_rev_value *rv;

	rk.cookie = bpf_get_socket_cookie(ctx);
	read_addr(ctx, v6, rk.addr);
	rk.port = (__u16)ctx->user_port;
	rk.proto = proto;
	rv = bpf_map_lookup_elem(&svc_rev, &rk);
	if (!rv)
		return ALLOW;
	write_addr(ctx, v6, rv->addr, rv->port);
	count(SVC_STAT_REV);
	return ALLOW;
}

SEC("cgroup/connect4")
int uc_svc_connect4(struct bpf_sock_addr *ctx)
{
	return do_connect(ctx, 0);
}

SEC("cgroup/connect6")
int uc_svc_connect6(struct bpf_sock_addr *ctx)
{
	return do_connect(ctx, 1);
}

SEC("cgroup/sendmsg4")
int uc_svc_sendmsg4(struct bpf_sock_addr *ctx)
{
	return do_sendmsg(ctx, 0);
}

SEC("cgroup/sendmsg6")
int uc_svc_sendmsg6(struct bpf_sock_addr *ctx)
{
	return do_sendmsg(ctx, 1);
}

SEC("cgroup/recvmsg4")
int uc_svc_recvmsg4(struct bpf_sock_addr *ctx)
{
	return do_rev(ctx, 0, IPPROTO_UDP);
}

SEC("cgroup/recvmsg6")
int uc_svc_recvmsg6(struct bpf_sock_addr *ctx)
{
	return do_rev(ctx, 1, IPPROTO_UDP);
}

SEC("cgroup/getpeername4")
int uc_svc_getpeer4(struct bpf_sock_addr *ctx)
{
	return do_rev(ctx, 0, ctx->protocol);
}

SEC("cgroup/getpeername6")
int uc_svc_getpeer6(struct bpf_sock_addr *ctx)
{
	return do_rev(ctx, 1, ctx->protocol);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

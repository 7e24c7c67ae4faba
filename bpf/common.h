/* Helpers of the tc programs (fastpath.c, terway.c, policy.c). Maps are passed in as
 * `void *`: every caller is inlined with one constant map, so the verifier still sees a
 * map pointer it knows at each call of a map helper. */
#ifndef UNICNI_COMMON_H
#define UNICNI_COMMON_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* "Not mine, carry on": TC_ACT_UNSPEC is TCX_NEXT under tcx and "next filter" under a
 * direct-action cls_bpf filter, so a program attached after this one (NetworkPolicy, the
 * fast path, another chained plugin) still sees the frame, and with none the frame goes on
 * exactly as with TC_ACT_OK. TC_ACT_OK would end the tcx chain here. */
#define PASS TC_ACT_UNSPEC

/* The definition of a map that libbpf pins by name (so a restarted agent, an upgrade or
 * `unicni uninstall` finds it). The member order is the BTF layout the pins were made
 * with; tries, which need BPF_F_NO_PREALLOC, are spelled out where they are defined. */
#define PINNED_MAP(map_type, entries, key_type, value_type)          \
	struct {                                                     \
		__uint(type, map_type);                              \
		__uint(max_entries, entries);                        \
		__type(key, key_type);                               \
		__type(value, value_type);                           \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                 \
	}

/* A per-CPU array of frame counters, one per slot (see count_in). */
#define STATS_MAP(slots) PINNED_MAP(BPF_MAP_TYPE_PERCPU_ARRAY, slots, __u32, __u64)

/* Written by user space only: which interfaces carry the programs and how (tcx or
 * netlink), so a restarted agent or `unicni uninstall` finds netlink filters, which cannot
 * be pinned. */
#define LINKS_MAP(entries) PINNED_MAP(BPF_MAP_TYPE_HASH, entries, __u32, __u32)

#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8

/* <linux/icmp.h> drags in libc headers under -target bpf; the echo header is all that is
 * needed (an error's type and code share its first bytes). */
struct icmp_echo {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u16 id;
	__u16 seq;
};

/* Counts one frame in `slot` of a per-CPU statistics array; returns `verdict`. */
static __always_inline int count_in(void *stats, __u32 slot, int verdict)
{
	__u64 *c = bpf_map_lookup_elem(stats, &slot);

	if (c)
		*c += 1; /* per-CPU slot: no atomic needed */
	return verdict;
}

/* Makes the frame's first `need` bytes readable and returns where they start, or NULL
 * when the frame is shorter; `*data_end` is the end of the linear data. Headers in a
 * fragment of a non-linear skb are pulled into the linear part once. */
static __always_inline void *pull_headers(struct __sk_buff *skb, __u32 need, void **data_end)
{
	void *data = (void *)(long)skb->data;

	*data_end = (void *)(long)skb->data_end;
	if (data + need > *data_end) {
		if (bpf_skb_pull_data(skb, need))
			return NULL;
		data = (void *)(long)skb->data;
		*data_end = (void *)(long)skb->data_end;
		if (data + need > *data_end)
			return NULL;
	}
	return data;
}

/* Records `key` in a map of flows that went through the host. Looks before writing: most
 * frames of a slow flow find their entry, and a lookup does not dirty a cache line. */
static __always_inline void remember_in(void *flows, const void *key)
{
	__u8 one = 1;

	if (!bpf_map_lookup_elem(flows, key))
		bpf_map_update_elem(flows, key, &one, BPF_ANY);
}

#endif

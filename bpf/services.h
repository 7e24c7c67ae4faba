/* Service load balancing at the socket layer: map layouts shared between bpf/services.c and
 * the Rust loader (crates/bpf/src/services.rs mirrors every struct here; keep them in step).
 *
 * Addresses are 16 bytes, as the kernel hands them to sock_addr programs in `user_ip6`
 * (four 32-bit words, network byte order); an IPv4 address is stored as the IPv4-mapped
 * IPv6 address ::ffff:a.b.c.d, so an IPv6 socket connecting to a mapped IPv4 ClusterIP
 * finds the same frontend. Ports are in network byte order, everything else host order. */
#ifndef UNICNI_SERVICES_H
#define UNICNI_SERVICES_H

#include <linux/types.h>

/* Key of `svc_frontends`: one ClusterIP, port and protocol of a Service. */
struct svc_key {
	__u32 addr[4];
	__u16 port;
	__u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

/* Value of `svc_frontends`. `count` slots (0..count) of `svc_slots` hold the backends new
 * connections choose from; 0 means no backend: the connect/sendmsg fails (EPERM). */
struct svc_value {
	__u32 id;           /* the frontend's id: key of its slots, backends and affinity */
	__u32 count;
	__u32 affinity_sec; /* sessionAffinity ClientIP timeout; 0 = no affinity */
	__u32 flags;
};

/* Key of `svc_slots`; the value is a backend id. */
struct svc_slot_key {
	__u32 id;
	__u32 slot;
};

/* Value of `svc_backends` (key: backend id, unique per frontend and endpoint). */
#define SVC_BACKEND_TERMINATING 1 /* not chosen again; established flows keep it */
struct svc_backend {
	__u32 addr[4];
	__u16 port;
	__u8 flags;
	__u8 pad;
	__u32 svc_id; /* the frontend it belongs to */
};

/* `svc_affinity` (LRU): the client's network namespace (a pod) and the frontend. */
struct svc_aff_key {
	__u64 client; /* netns cookie */
	__u32 svc_id;
	__u32 pad;
};

struct svc_aff_value {
	__u64 last_ns; /* bpf_ktime_get_ns() of the last use */
	__u32 backend_id;
	__u32 pad;
};

/* `svc_udp_flows` (LRU): the backend an unconnected UDP socket sends a frontend's
 * datagrams to, so the flow keeps it across endpoint changes. */
struct svc_flow_key {
	__u64 cookie; /* socket cookie */
	__u32 addr[4];
	__u16 port;
	__u8 proto;
	__u8 pad[5];
};

struct svc_flow_value {
	__u32 backend_id;
	__u32 svc_id;
};

/* `svc_rev` (LRU): for a socket and the backend it talks to, the frontend the application
 * asked for: recvmsg and getpeername show it instead of the backend. */
struct svc_rev_key {
	__u64 cookie;
	__u32 addr[4];
	__u16 port;
	__u8 proto;
	__u8 pad[5];
};

struct svc_rev_value {
	__u32 addr[4];
	__u16 port;
	__u16 pad;
};

/* Slots of the per-CPU `svc_stats` array. */
enum svc_stat {
	SVC_STAT_CONNECT = 0,      /* connect() to a frontend sent to a backend */
	SVC_STAT_SENDMSG = 1,      /* unconnected UDP datagram sent to a backend */
	SVC_STAT_NO_BACKEND = 2,   /* to a frontend without backends: refused */
	SVC_STAT_REV = 3,          /* recvmsg/getpeername shown the frontend */
	SVC_STAT_AFFINITY = 4,     /* backend taken from ClientIP affinity */
	SVC_STAT_UDP_FLOW = 5,     /* backend kept from the socket's earlier datagrams */
	SVC_STAT_MAX = 6,
};

#endif

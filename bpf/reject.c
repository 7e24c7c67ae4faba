// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Test fixture, never attached: reads packet data without a bounds check, which every
 * kernel's verifier refuses. The loader's tests use it to prove that a verifier refusal
 * reaches the caller as a typed error with the verifier log.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("classifier")
int uc_reject(struct __sk_buff *skb)
{
	__u8 *data = (void *)(long)skb->data;

	return data[64] == 1 ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

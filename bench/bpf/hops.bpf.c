// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * One hop, every attach family: what bench/hops.py attaches, one program at a
 * time, to price each family's dispatch (the "empty" programs) and pktpath's
 * real work on top of it (the "body" programs, which call the same inline
 * recorders as exporter/bpf/pktpath.bpf.c).
 *
 * Program names are <hop>_<family>_<what>; bench/hops.py lists the variants.
 * Hops:
 *   drop  skb:kfree_skb.  The tracepoint is emitted inside sk_skb_reason_drop()
 *         since 6.11 ("net: introduce sk_skb_reason_drop function"; kfree_skb_reason
 *         became an inline wrapper), inside kfree_skb_reason() before that: the
 *         function hooks take whichever the running kernel's BTF has.
 *   rx    net:netif_receive_skb, emitted in __netif_receive_skb_core().  That
 *         function is a .constprop clone on 6.12 (no BTF entry under its own
 *         name), so the function hooks take its only caller on this path,
 *         __netif_receive_skb_one_core(): same packet, a few instructions earlier.
 *   iprcv ip_rcv: pktpath's own function hop (fentry first, kprobe fallback); it
 *         has no tracepoint.
 */
#include <linux/bpf.h>
#include "kernel_types.h"
/* bpf_tracing.h: kernel register names (kernel_types.h), as in pktpath.bpf.c. */
#define __VMLINUX_H__
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "compat.bpf.h"
#include "drops.bpf.h"
#include "paths.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define SKB(p) CAST(struct sk_buff, (void *)(p))

/* The drop hop's work, as kfree_skb__tp_btf does it (`location` counts only on kernels
 * without drop reasons: drops.bpf.h). */
static __always_inline void drop_body(struct sk_buff *skb, __u32 reason, __u64 location)
{
	if (reason_is_consumed(reason))
		return;
	count_drop(skb, reason, location);
	path_drop(skb, reason, location);
}

/* ---- drop: skb:kfree_skb ------------------------------------------------ */

SEC("tp_btf/kfree_skb")
int drop_tpbtf_empty(void *ctx) { return 0; }

SEC("tp_btf/kfree_skb")
int BPF_PROG(drop_tpbtf_body, struct sk_buff *skb, void *location)
{
	drop_body(skb, drop_reason_or_evidence(ctx, skb), (__u64)location);
	return 0;
}

/* Untyped raw tracepoint: same dispatch as tp_btf (bpf_trace_run), no BTF. */
SEC("raw_tp/kfree_skb")
int drop_rawtp_empty(void *ctx) { return 0; }

/* Classic (perf) tracepoint, what bpftrace's tracepoint:skb:kfree_skb uses:
 * the kernel fills the trace record before the program runs. */
SEC("tracepoint/skb/kfree_skb")
int drop_tp_empty(void *ctx) { return 0; }

SEC("fentry/sk_skb_reason_drop")
int drop_fentry_empty(void *ctx) { return 0; }

SEC("fentry/sk_skb_reason_drop")
int BPF_PROG(drop_fentry_body, struct sock *sk, struct sk_buff *skb, enum skb_drop_reason reason)
{
	drop_body(skb, reason, 0);
	return 0;
}

SEC("kprobe/sk_skb_reason_drop")
int drop_kprobe_empty(void *ctx) { return 0; }

SEC("kprobe/sk_skb_reason_drop")
int BPF_KPROBE(drop_kprobe_body, void *sk, void *skb, int reason)
{
	drop_body(SKB(skb), reason, 0);
	return 0;
}

/* Before 6.11 (e.g. 6.1): kfree_skb_reason(skb, reason). */
SEC("fentry/kfree_skb_reason")
int drop_fentry61_empty(void *ctx) { return 0; }

SEC("fentry/kfree_skb_reason")
int BPF_PROG(drop_fentry61_body, struct sk_buff *skb, enum skb_drop_reason reason)
{
	drop_body(skb, reason, 0);
	return 0;
}

SEC("kprobe/kfree_skb_reason")
int drop_kprobe61_empty(void *ctx) { return 0; }

SEC("kprobe/kfree_skb_reason")
int BPF_KPROBE(drop_kprobe61_body, void *skb, int reason)
{
	drop_body(SKB(skb), reason, 0);
	return 0;
}

/* ---- rx: net:netif_receive_skb ------------------------------------------ */

SEC("tp_btf/netif_receive_skb")
int rx_tpbtf_empty(void *ctx) { return 0; }

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(rx_tpbtf_body, struct sk_buff *skb)
{
	path_entry_hop(skb, HOP_NETIF_RECEIVE, skb->dev, dev_netns(skb->dev));
	return 0;
}

SEC("raw_tp/netif_receive_skb")
int rx_rawtp_empty(void *ctx) { return 0; }

SEC("tracepoint/net/netif_receive_skb")
int rx_tp_empty(void *ctx) { return 0; }

SEC("fentry/__netif_receive_skb_one_core")
int rx_fentry_empty(void *ctx) { return 0; }

SEC("fentry/__netif_receive_skb_one_core")
int BPF_PROG(rx_fentry_body, struct sk_buff *skb)
{
	path_entry_hop(skb, HOP_NETIF_RECEIVE, skb->dev, dev_netns(skb->dev));
	return 0;
}

SEC("kprobe/__netif_receive_skb_one_core")
int rx_kprobe_empty(void *ctx) { return 0; }

SEC("kprobe/__netif_receive_skb_one_core")
int BPF_KPROBE(rx_kprobe_body, void *skb)
{
	path_entry_hop(SKB(skb), HOP_NETIF_RECEIVE, SKB(skb)->dev, dev_netns(SKB(skb)->dev));
	return 0;
}

/* ---- iprcv: ip_rcv (pktpath's ip_rcv__fentry / ip_rcv__kprobe) ---------- */

SEC("fentry/ip_rcv")
int iprcv_fentry_empty(void *ctx) { return 0; }

SEC("fentry/ip_rcv")
int BPF_PROG(iprcv_fentry_body, struct sk_buff *skb, struct net_device *dev)
{
	path_entry_hop(skb, HOP_IP_RCV, dev, dev_netns(dev));
	return 0;
}

SEC("kprobe/ip_rcv")
int iprcv_kprobe_empty(void *ctx) { return 0; }

SEC("kprobe/ip_rcv")
int BPF_KPROBE(iprcv_kprobe_body, void *skb, void *dev)
{
	path_entry_hop(SKB(skb), HOP_IP_RCV, CAST(struct net_device, dev), dev_netns(CAST(struct net_device, dev)));
	return 0;
}

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * pktpath kernel side: one thin program per hop.
 *
 * - drops.h: every drop counted, unsampled, in a per-CPU hash that userspace
 *   reads at scrape time.
 * - paths.h: sampled packets followed hop by hop into the `events` ring.
 *
 * Program names follow <hop>__<attach mode>: the loader picks, per hop, the
 * first candidate family that loads and attaches (exporter/loader/probes.py).
 * On this project's reference kernel only tracepoints attach (lockdown), so
 * every hop here is a tp_btf program; fentry/kprobe twins add candidates.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "kernel_types.h"
#include "compat.h"
#include "drops.h"
#include "paths.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/kfree_skb")
int BPF_PROG(kfree_skb__tp_btf, struct sk_buff *skb, void *location)
{
	__u32 reason = kfree_skb_reason_arg(ctx);

	if (reason_is_consumed(reason))
		return 0;
	count_drop(skb, reason);
	path_drop(skb, reason, (__u64)location);
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(netif_receive_skb__tp_btf, struct sk_buff *skb)
{
	path_entry_hop(skb, HOP_NETIF_RECEIVE, skb->dev);
	return 0;
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(net_dev_queue__tp_btf, struct sk_buff *skb)
{
	path_entry_hop(skb, HOP_DEV_QUEUE, skb->dev);
	return 0;
}

SEC("tp_btf/net_dev_xmit")
int BPF_PROG(net_dev_xmit__tp_btf, struct sk_buff *skb, int rc, struct net_device *dev)
{
	/* The driver may have freed skb already: only its pointer and the dev
	 * argument are used, never its fields. */
	path_hop(skb, 0, HOP_DEV_XMIT, dev, rc, 0, 0, 0);
	return 0;
}

SEC("tp_btf/fib_table_lookup")
int BPF_PROG(fib_table_lookup__tp_btf, __u32 table, struct flowi4 *flp, struct fib_nh_common *nhc, int err)
{
	path_fib_lookup(table, flp, nhc, err);
	return 0;
}

SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(skb_copy_datagram_iovec__tp_btf, struct sk_buff *skb)
{
	/* The datagram reached a reader.  It is freed next without a tracepoint
	 * (skb_consume_udp), so this is the last chance to untrack it before
	 * its pointer is reused. */
	path_hop(skb, 1, HOP_DELIVER, skb->dev, 0, 0, 0, 1);
	return 0;
}

SEC("tp_btf/consume_skb")
int BPF_PROG(consume_skb__tp_btf, struct sk_buff *skb, void *location)
{
	path_hop(skb, 1, HOP_CONSUME, skb->dev, 0, 0, (__u64)location, 1);
	return 0;
}

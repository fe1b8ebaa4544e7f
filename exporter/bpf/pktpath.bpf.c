// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * pktpath kernel side: one thin program per hop.
 *
 * - drops.bpf.h: every drop counted, unsampled, in a per-CPU hash that userspace
 *   reads at scrape time.
 * - paths.bpf.h: sampled packets followed hop by hop into the `events` ring.
 *
 * Program names follow <hop>__<attach mode>: the loader picks, per hop, the
 * first candidate family that loads and attaches (exporter/loader/probes.py).
 * Built twice: pktpath.bpf.o, every hop's programs; and window.bpf.o
 * (window.bpf.c), the sampling windows' kprobe.multi dispatchers and twins,
 * which only kernels that attach a window's function hooks as links open.
 * On a locked-down kernel (lockdown=confidentiality) only tracepoints attach,
 * so every hop has a tp_btf program or none; fentry/kprobe twins add candidates
 * where the kernel allows function hooks.
 */
#include <linux/bpf.h>
#include "kernel_types.h"
/* bpf_tracing.h: kernel register names (kernel_types.h), not the uapi ones. */
#define __VMLINUX_H__
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "compat.bpf.h"
#include "drops.bpf.h"
#include "paths.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* ---- tracepoints: pktpath.bpf.o only (window.bpf.o holds the windows' kprobe.multi programs) ---- */
#ifndef PKTPATH_WINDOW_OBJECT

/*
 * The always-on drop program counts, then tail-calls drop_capture for the
 * drop's path.  Two programs, so that counting starts after the verifier has
 * walked counting alone: about a third of the time the whole would take (the
 * header parsing of drop capture is the rest), and the agent loads it first
 * (exporter/loader/engine.py).  A tail call, not a second program on the
 * tracepoint: a drop pays one dispatch, and no drop is counted twice or missed
 * while the continuation is put in place.
 */
SEC("tp_btf/kfree_skb")
int BPF_PROG(kfree_skb__tp_btf, struct sk_buff *skb, void *location)
{
	/* Before 5.17: evidence in place of the reason the kernel does not give (drops.bpf.h). */
	__u32 reason = drop_reason_or_evidence(ctx, skb);

	if (reason_is_consumed(reason))
		return 0;
	count_drop(skb, reason, (__u64)location);
	if (drop_capture_idle())
		return 0;
	/* Evidence is read once (it clears the rp_filter note it uses): handed over in this CPU's
	 * state, not redone.  A reason is the tracepoint's argument: the continuation reads it there. */
	IF_NO_DROP_REASONS({
		struct cpu_state *st = this_cpu_state();

		if (!st)
			return 0;
		st->drop_reason = reason;
	});
	bpf_tail_call(ctx, &drop_next, 0);
	return 0;
}

/* Reached only by the tail call above (the section gives it the same context
 * and makes it compatible with drop_next); never attached on its own. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(drop_capture, struct sk_buff *skb, void *location)
{
	__u32 reason = kfree_skb_reason_arg(ctx);

	IF_NO_DROP_REASONS({
		struct cpu_state *st = this_cpu_state();

		if (!st)
			return 0;
		reason = st->drop_reason;
	});
	path_drop(skb, reason, (__u64)location);
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(netif_receive_skb__tp_btf, struct sk_buff *skb)
{
	path_entry_hop(skb, HOP_NETIF_RECEIVE, skb->dev, dev_netns(skb->dev));
	return 0;
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(net_dev_queue__tp_btf, struct sk_buff *skb)
{
	path_entry_hop(skb, HOP_DEV_QUEUE, skb->dev, dev_netns(skb->dev));
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

SEC("tp_btf/fib6_table_lookup")
int BPF_PROG(fib6_table_lookup__tp_btf, const struct net *net, const struct fib6_result *res,
	     struct fib6_table *table, const struct flowi6 *flp)
{
	path_fib6_lookup(net, res, table, flp);
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

SEC("tp_btf/sk_data_ready")
int BPF_PROG(sk_data_ready__tp_btf, struct sock *sk)
{
	path_sock_queue(sk);
	return 0;
}

SEC("tp_btf/consume_skb")
int BPF_PROG(consume_skb__tp_btf, struct sk_buff *skb)
{
	/* No `location`: consume_skb gained it only in 6.3, and reading ctx[1] on 6.1
	 * is refused ("func 'consume_skb' doesn't have 2-th argument"). */
	path_hop(skb, 1, HOP_CONSUME, skb->dev, 0, 0, 0, 1);
	return 0;
}

#endif /* !PKTPATH_WINDOW_OBJECT */

/* ---- function hooks: fentry/fexit first, kprobe/kretprobe fallback -------
 *
 * Each hook below is one body and one line: FUNC_HOOK, FUNC_HOOK_RETURN or
 * FUNC_HOOK_AROUND (hooks.bpf.h) make the fentry/fexit program and its
 * kprobe/kretprobe twin from it, naming the arguments the body takes by their
 * position in the function's signature.  Bodies receive raw u64 arguments and
 * type them with CAST(), which serves both families: fentry's typed pointers
 * and kprobes' registers (compat.bpf.h: KREAD).
 */
#include "hooks.bpf.h"

#define SKB(p) CAST(struct sk_buff, (void *)(p))
#define DEV(p) CAST(struct net_device, (void *)(p))

/* skb->dev for any of the hop programs (compat.bpf.h: KREAD). */
static __always_inline struct net_device *skb_dev(struct sk_buff *skb)
{
	return KREAD(skb->dev, skb, dev);
}

/* The namespace of a function's `struct net *` argument. */
static __always_inline __u32 net_inum(__u64 net_ptr)
{
	struct net *net = CAST(struct net, (void *)net_ptr);

	return KREAD(net->ns.inum, net, ns.inum);
}

/* ip_rcv(skb, dev, ...), ipv6_rcv: where packets enter IPv4/IPv6. */
static __always_inline void on_ip_rcv(__u64 skb, __u64 dev, __u64 unused)
{
	path_entry_hop(SKB(skb), HOP_IP_RCV, DEV(dev), dev_netns(DEV(dev)));
}
FUNC_HOOK(ip_rcv, ip_rcv, on_ip_rcv, 1, 2, 0)
FUNC_HOOK(ipv6_rcv, ipv6_rcv, on_ip_rcv, 1, 2, 0)

/* ip_output(net, sk, skb), ip6_output: the first hop of packets made on this host. */
static __always_inline void on_ip_output(__u64 net, __u64 skb, __u64 unused)
{
	path_entry_hop(SKB(skb), HOP_IP_OUTPUT, 0, net_inum(net));
	queue_xmit_report(SKB(skb));
}
FUNC_HOOK(ip_output, ip_output, on_ip_output, 1, 3, 0)
FUNC_HOOK(ip6_output, ip6_output, on_ip_output, 1, 3, 0)

/* Later hops with the skb first: forwarding starts, local delivery. */
#define ON_SKB_HOP(name, hop)                                                  \
	static __always_inline void name(__u64 skb, __u64 unused1, __u64 unused2) \
	{                                                                         \
		path_hop(SKB(skb), 1, hop, skb_dev(SKB(skb)), 0, 0, 0, 0);        \
	}
ON_SKB_HOP(on_ip_forward, HOP_IP_FORWARD)
ON_SKB_HOP(on_ip_local_deliver, HOP_LOCAL_DELIVER)
FUNC_HOOK(ip_forward, ip_forward, on_ip_forward, 1, 0, 0)
FUNC_HOOK(ip6_forward, ip6_forward, on_ip_forward, 1, 0, 0)
FUNC_HOOK(ip_local_deliver, ip_local_deliver, on_ip_local_deliver, 1, 0, 0)

/*
 * Later hops of the IP paths, all (net, sk, skb): the okfn each netfilter
 * hook calls when its chains accepted the packet, so each one says "passed
 * that hook".  Their return values are not reported: a packet they drop is
 * freed through kfree_skb, which counts it with its reason already.
 *
 * Seen under ftrace on Debian's 6.1 and 6.12: ip_rcv_finish and
 * ip6_rcv_finish are inlined into ip_rcv/ipv6_rcv (and the list receive
 * path), so their out-of-line copies run only when the okfn is called through
 * the hook state's pointer: a packet reinjected after NFQUEUE.  There is no
 * other non-inlined function at that point (ip_rcv_finish_core is inlined
 * too; the route lookup inside it is the ip_route_input_noref hop).
 * ip6_forward_finish is inlined into ip6_forward and its kallsyms copy takes
 * neither fentry (EBUSY) nor a kprobe (EINVAL): no IPv6 twin for that hop.
 */
ON_SKB_HOP(on_ip_rcv_finish, HOP_IP_RCV_FINISH)
ON_SKB_HOP(on_ip_forward_finish, HOP_IP_FORWARD_FINISH)
ON_SKB_HOP(on_ip_finish_output, HOP_IP_FINISH_OUTPUT)
FUNC_HOOK(ip_rcv_finish, ip_rcv_finish, on_ip_rcv_finish, 3, 0, 0)
FUNC_HOOK(ip6_rcv_finish, ip6_rcv_finish, on_ip_rcv_finish, 3, 0, 0)
FUNC_HOOK(ip_forward_finish, ip_forward_finish, on_ip_forward_finish, 3, 0, 0)
FUNC_HOOK(ip_finish_output, ip_finish_output, on_ip_finish_output, 3, 0, 0)
FUNC_HOOK(ip6_finish_output, ip6_finish_output, on_ip_finish_output, 3, 0, 0)

/*
 * __ip_queue_xmit(sk, skb, fl, tos): TCP's (and SCTP's) way into IP; the
 * exported ip_queue_xmit() is a wrapper around it, so this sees both.  Both
 * symbols are real functions on 6.1 and 6.12 (kallsyms, ftrace).
 * ip6_xmit(sk, skb, fl6, mark, opt, tclass, priority): the IPv6 twin.
 */
static __always_inline void on_queue_xmit(__u64 skb, __u64 unused1, __u64 unused2)
{
	hook_queue_xmit_entry((void *)skb);
}
FUNC_HOOK(ip_queue_xmit, __ip_queue_xmit, on_queue_xmit, 2, 0, 0)
FUNC_HOOK(ip6_xmit, ip6_xmit, on_queue_xmit, 2, 0, 0)

/* nf_hook_slow(skb, state, entries, index): a netfilter hook, entry and verdict. */
static __always_inline void on_nf_hook(__u64 skb, __u64 state, __u64 unused)
{
	hook_nf_entry(SKB(skb), CAST(struct nf_hook_state, (void *)state));
}

static __always_inline void on_nf_hook_return(__u64 skb, __u64 state, __u64 unused, long ret)
{
	hook_nf_exit(SKB(skb), CAST(struct nf_hook_state, (void *)state), (int)ret);
}
FUNC_HOOK_AROUND(nf_hook_slow, nf_hook_slow, STASH_NF_HOOK, on_nf_hook, on_nf_hook_return, 1, 2, 0)

/* nft_do_chain(pkt, chain): one nftables chain's verdict (nf_tables may be a module). */
static __always_inline void on_nft_chain(__u64 pkt, __u64 unused1, __u64 unused2)
{
	hook_nft_entry((void *)pkt);
}

static __always_inline void on_nft_chain_return(__u64 pkt, __u64 chain, __u64 unused, long ret)
{
	hook_nft_exit((void *)pkt, (void *)chain, (__u32)ret);
}
FUNC_HOOK_AROUND(nft_do_chain, nft_do_chain, STASH_NFT_CHAIN, on_nft_chain, on_nft_chain_return, 1, 2, 0)

/*
 * fib_validate_source(skb, src, dst, dscp, oif, dev, idev, itag): rp_filter.
 * Eight arguments: x86 trampolines take more than six only since 6.6
 * ("bpf, x86: allow function arguments up to 12"), so on older kernels the
 * fexit is refused and the kretprobe twin takes over.
 */
static __always_inline void on_rp_filter_return(__u64 skb, __u64 dev, __u64 unused, long ret)
{
	hook_rp_filter_exit((void *)skb, (void *)dev, (int)ret);
}
FUNC_HOOK_RETURN(fib_validate_source, fib_validate_source, STASH_RP_FILTER, on_rp_filter_return, 1, 6, 0)

/* ip_route_input_noref(skb, daddr, saddr, dscp, dev): the input route lookup. */
static __always_inline void on_route_input_return(__u64 skb, __u64 dev, __u64 unused, long ret)
{
	hook_route_input_exit((void *)skb, (void *)dev, (__s32)ret);
}
FUNC_HOOK_RETURN(ip_route_input_noref, ip_route_input_noref, STASH_ROUTE_INPUT, on_route_input_return, 1, 5, 0)

/*
 * ipt_do_table: an iptables-legacy table's verdict (ip_tables module).  Its
 * arguments are (priv = struct xt_table *, skb, state) since 5.16 and (skb,
 * state, table) before (compat.bpf.h).  The body takes all three by position
 * and puts them in the 5.16 order itself, so the fexit and the kretprobe
 * (whose kprobe stashes the positions as they came) share the reorder.
 */
static __always_inline void on_ipt_table_return(__u64 arg1, __u64 arg2, __u64 arg3, long ret)
{
	__u64 table = arg1, skb = arg2, state = arg3;

	ipt_do_table_args(&table, &skb, &state); /* compat.bpf.h: (skb, state, table) before 5.16 */
	hook_ipt_exit((void *)table, (void *)skb, (void *)state, (__u32)ret);
}
FUNC_HOOK_RETURN(ipt_do_table, ipt_do_table, STASH_IPT_TABLE, on_ipt_table_return, 1, 2, 3)

#ifdef PKTPATH_WINDOW_OBJECT
/*
 * window.bpf.o: a sampling window's function hooks, as two kprobe.multi links instead of a
 * link per hook (exporter/loader/window_links.py).  Detaching an fentry
 * trampoline or a kprobe waits for RCU grace periods, one function after
 * another under ftrace_lock: a window's 15 function hooks took 2.1 s to
 * detach in the 6.12 guest, and a flood paid them all that time.  One
 * kprobe.multi link unregisters every function at once (71 ms there).  Each
 * function's attach cookie is its slot in the program array: the hook's own
 * kprobe.multi twin, reached by a tail call, runs the same body as its
 * kprobe.  An empty slot falls through: nothing is reported.
 */
SEC("kprobe.multi")
int window_call(struct pt_regs *ctx)
{
	bpf_tail_call(ctx, &window_calls, (__u32)bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("kretprobe.multi")
int window_return(struct pt_regs *ctx)
{
	bpf_tail_call(ctx, &window_returns, (__u32)bpf_get_attach_cookie(ctx));
	return 0;
}
#endif /* PKTPATH_WINDOW_OBJECT */

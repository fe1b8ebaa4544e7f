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
#include "kernel_types.h"
/* bpf_tracing.h: kernel register names (kernel_types.h), not the uapi ones. */
#define __VMLINUX_H__
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "compat.h"
#include "drops.h"
#include "paths.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/kfree_skb")
int BPF_PROG(kfree_skb__tp_btf, struct sk_buff *skb, void *location)
{
	/* Before 5.17: evidence in place of the reason the kernel does not give (drops.h). */
	__u32 reason = drop_reason_or_evidence(ctx, skb);

	if (reason_is_consumed(reason))
		return 0;
	count_drop(skb, reason, (__u64)location);
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

/* ---- function hooks: fentry/fexit first, kprobe/kretprobe fallback -------
 *
 * fexit programs read the return value with bpf_get_func_ret() (5.17+), so
 * they do not depend on how many arguments the function has.  Kprobes see
 * untyped registers; bpf_rdonly_cast (6.2+) gives them the same typed view as
 * fentry, so one implementation in hooks.h serves both families.
 */
#include "hooks.h"

#define SKB(p) CAST(struct sk_buff, (void *)(p))
#define DEV(p) CAST(struct net_device, (void *)(p))

/* skb->dev for any of the hop programs (compat.h: KREAD). */
static __always_inline struct net_device *skb_dev(struct sk_buff *skb)
{
	return KREAD(skb->dev, skb, dev);
}

static __always_inline long func_ret(void *ctx)
{
	__u64 ret = 0;

	bpf_get_func_ret(ctx, &ret);
	return (long)ret;
}

/* Where packets enter IPv4/IPv6 and leave through the IP output path. */
SEC("fentry/ip_rcv")
int BPF_PROG(ip_rcv__fentry, struct sk_buff *skb, struct net_device *dev)
{
	path_entry_hop(skb, HOP_IP_RCV, dev, dev_netns(dev));
	return 0;
}

SEC("kprobe/ip_rcv")
int BPF_KPROBE(ip_rcv__kprobe, void *skb, void *dev)
{
	path_entry_hop(SKB(skb), HOP_IP_RCV, DEV(dev), dev_netns(DEV(dev)));
	return 0;
}

SEC("fentry/ipv6_rcv")
int BPF_PROG(ipv6_rcv__fentry, struct sk_buff *skb, struct net_device *dev)
{
	path_entry_hop(skb, HOP_IP_RCV, dev, dev_netns(dev));
	return 0;
}

SEC("kprobe/ipv6_rcv")
int BPF_KPROBE(ipv6_rcv__kprobe, void *skb, void *dev)
{
	path_entry_hop(SKB(skb), HOP_IP_RCV, DEV(dev), dev_netns(DEV(dev)));
	return 0;
}

SEC("fentry/ip_forward")
int BPF_PROG(ip_forward__fentry, struct sk_buff *skb)
{
	path_hop(skb, 1, HOP_IP_FORWARD, skb->dev, 0, 0, 0, 0);
	return 0;
}

SEC("kprobe/ip_forward")
int BPF_KPROBE(ip_forward__kprobe, void *skb)
{
	path_hop(SKB(skb), 1, HOP_IP_FORWARD, skb_dev(SKB(skb)), 0, 0, 0, 0);
	return 0;
}

SEC("fentry/ip6_forward")
int BPF_PROG(ip6_forward__fentry, struct sk_buff *skb)
{
	path_hop(skb, 1, HOP_IP_FORWARD, skb->dev, 0, 0, 0, 0);
	return 0;
}

SEC("kprobe/ip6_forward")
int BPF_KPROBE(ip6_forward__kprobe, void *skb)
{
	path_hop(SKB(skb), 1, HOP_IP_FORWARD, skb_dev(SKB(skb)), 0, 0, 0, 0);
	return 0;
}

SEC("fentry/ip_local_deliver")
int BPF_PROG(ip_local_deliver__fentry, struct sk_buff *skb)
{
	path_hop(skb, 1, HOP_LOCAL_DELIVER, skb->dev, 0, 0, 0, 0);
	return 0;
}

SEC("kprobe/ip_local_deliver")
int BPF_KPROBE(ip_local_deliver__kprobe, void *skb)
{
	path_hop(SKB(skb), 1, HOP_LOCAL_DELIVER, skb_dev(SKB(skb)), 0, 0, 0, 0);
	return 0;
}

/* The namespace of a function's `struct net *` argument. */
static __always_inline __u32 net_inum(struct net *net)
{
	return KREAD(net->ns.inum, net, ns.inum);
}

/* ip_output(net, sk, skb): the first hop of packets made on this host. */
SEC("fentry/ip_output")
int BPF_PROG(ip_output__fentry, struct net *net, void *sk, struct sk_buff *skb)
{
	path_entry_hop(skb, HOP_IP_OUTPUT, 0, net_inum(net));
	queue_xmit_report(skb);
	return 0;
}

SEC("kprobe/ip_output")
int BPF_KPROBE(ip_output__kprobe, void *net, void *sk, void *skb)
{
	path_entry_hop(SKB(skb), HOP_IP_OUTPUT, 0, net_inum(CAST(struct net, net)));
	queue_xmit_report(SKB(skb)); /* typed: it reads skb->len where bpf_rdonly_cast exists */
	return 0;
}

SEC("fentry/ip6_output")
int BPF_PROG(ip6_output__fentry, struct net *net, void *sk, struct sk_buff *skb)
{
	path_entry_hop(skb, HOP_IP_OUTPUT, 0, net_inum(net));
	queue_xmit_report(skb);
	return 0;
}

SEC("kprobe/ip6_output")
int BPF_KPROBE(ip6_output__kprobe, void *net, void *sk, void *skb)
{
	path_entry_hop(SKB(skb), HOP_IP_OUTPUT, 0, net_inum(CAST(struct net, net)));
	queue_xmit_report(SKB(skb)); /* typed: it reads skb->len where bpf_rdonly_cast exists */
	return 0;
}

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
SEC("fentry/ip_rcv_finish")
int BPF_PROG(ip_rcv_finish__fentry, void *net, void *sk, struct sk_buff *skb)
{
	path_hop(skb, 1, HOP_IP_RCV_FINISH, skb->dev, 0, 0, 0, 0);
	return 0;
}

SEC("kprobe/ip_rcv_finish")
int BPF_KPROBE(ip_rcv_finish__kprobe, void *net, void *sk, void *skb)
{
	path_hop(SKB(skb), 1, HOP_IP_RCV_FINISH, skb_dev(SKB(skb)), 0, 0, 0, 0);
	return 0;
}

SEC("fentry/ip6_rcv_finish")
int BPF_PROG(ip6_rcv_finish__fentry, void *net, void *sk, struct sk_buff *skb)
{
	path_hop(skb, 1, HOP_IP_RCV_FINISH, skb->dev, 0, 0, 0, 0);
	return 0;
}

SEC("kprobe/ip6_rcv_finish")
int BPF_KPROBE(ip6_rcv_finish__kprobe, void *net, void *sk, void *skb)
{
	path_hop(SKB(skb), 1, HOP_IP_RCV_FINISH, skb_dev(SKB(skb)), 0, 0, 0, 0);
	return 0;
}

SEC("fentry/ip_forward_finish")
int BPF_PROG(ip_forward_finish__fentry, void *net, void *sk, struct sk_buff *skb)
{
	path_hop(skb, 1, HOP_IP_FORWARD_FINISH, skb->dev, 0, 0, 0, 0);
	return 0;
}

SEC("kprobe/ip_forward_finish")
int BPF_KPROBE(ip_forward_finish__kprobe, void *net, void *sk, void *skb)
{
	path_hop(SKB(skb), 1, HOP_IP_FORWARD_FINISH, skb_dev(SKB(skb)), 0, 0, 0, 0);
	return 0;
}

SEC("fentry/ip_finish_output")
int BPF_PROG(ip_finish_output__fentry, void *net, void *sk, struct sk_buff *skb)
{
	path_hop(skb, 1, HOP_IP_FINISH_OUTPUT, skb->dev, 0, 0, 0, 0);
	return 0;
}

SEC("kprobe/ip_finish_output")
int BPF_KPROBE(ip_finish_output__kprobe, void *net, void *sk, void *skb)
{
	path_hop(SKB(skb), 1, HOP_IP_FINISH_OUTPUT, skb_dev(SKB(skb)), 0, 0, 0, 0);
	return 0;
}

SEC("fentry/ip6_finish_output")
int BPF_PROG(ip6_finish_output__fentry, void *net, void *sk, struct sk_buff *skb)
{
	path_hop(skb, 1, HOP_IP_FINISH_OUTPUT, skb->dev, 0, 0, 0, 0);
	return 0;
}

SEC("kprobe/ip6_finish_output")
int BPF_KPROBE(ip6_finish_output__kprobe, void *net, void *sk, void *skb)
{
	path_hop(SKB(skb), 1, HOP_IP_FINISH_OUTPUT, skb_dev(SKB(skb)), 0, 0, 0, 0);
	return 0;
}

/*
 * __ip_queue_xmit(sk, skb, fl, tos): TCP's (and SCTP's) way into IP; the
 * exported ip_queue_xmit() is a wrapper around it, so this sees both.  Both
 * symbols are real functions on 6.1 and 6.12 (kallsyms, ftrace).
 */
SEC("fentry/__ip_queue_xmit")
int BPF_PROG(ip_queue_xmit__fentry, void *sk, struct sk_buff *skb)
{
	hook_queue_xmit_entry(skb);
	return 0;
}

SEC("kprobe/__ip_queue_xmit")
int BPF_KPROBE(ip_queue_xmit__kprobe, void *sk, void *skb)
{
	hook_queue_xmit_entry(skb);
	return 0;
}

/* ip6_xmit(sk, skb, fl6, mark, opt, tclass, priority): the IPv6 twin. */
SEC("fentry/ip6_xmit")
int BPF_PROG(ip6_xmit__fentry, void *sk, struct sk_buff *skb)
{
	hook_queue_xmit_entry(skb);
	return 0;
}

SEC("kprobe/ip6_xmit")
int BPF_KPROBE(ip6_xmit__kprobe, void *sk, void *skb)
{
	hook_queue_xmit_entry(skb);
	return 0;
}

/* nf_hook_slow(skb, state, entries, index): a netfilter hook, entry and verdict. */
SEC("fentry/nf_hook_slow")
int BPF_PROG(nf_hook_slow__fentry, struct sk_buff *skb, struct nf_hook_state *state)
{
	hook_nf_entry(skb, state);
	return 0;
}

SEC("fexit/nf_hook_slow")
int BPF_PROG(nf_hook_slow__fexit, struct sk_buff *skb, struct nf_hook_state *state)
{
	hook_nf_exit(skb, state, (int)func_ret(ctx));
	return 0;
}

SEC("kprobe/nf_hook_slow")
int BPF_KPROBE(nf_hook_slow__kprobe, void *skb, void *state)
{
	hook_nf_entry(SKB(skb), CAST(struct nf_hook_state, state));
	stash_push(STASH_NF_HOOK, (__u64)skb, (__u64)state);
	return 0;
}

SEC("kretprobe/nf_hook_slow")
int BPF_KRETPROBE(nf_hook_slow__kretprobe, int ret)
{
	__u64 skb, state;

	if (stash_pop(STASH_NF_HOOK, &skb, &state) == 0)
		hook_nf_exit(SKB(skb), CAST(struct nf_hook_state, (void *)state), ret);
	return 0;
}

/* nft_do_chain(pkt, chain): one nftables chain's verdict (nf_tables may be a module). */
SEC("fentry/nft_do_chain")
int BPF_PROG(nft_do_chain__fentry, struct nft_pktinfo *pkt)
{
	hook_nft_entry(pkt);
	return 0;
}

SEC("fexit/nft_do_chain")
int BPF_PROG(nft_do_chain__fexit, struct nft_pktinfo *pkt, void *priv)
{
	hook_nft_exit(pkt, priv, (__u32)func_ret(ctx));
	return 0;
}

SEC("kprobe/nft_do_chain")
int BPF_KPROBE(nft_do_chain__kprobe, void *pkt, void *priv)
{
	hook_nft_entry(pkt);
	stash_push(STASH_NFT_CHAIN, (__u64)pkt, (__u64)priv);
	return 0;
}

SEC("kretprobe/nft_do_chain")
int BPF_KRETPROBE(nft_do_chain__kretprobe, unsigned int ret)
{
	__u64 pkt, priv;

	if (stash_pop(STASH_NFT_CHAIN, &pkt, &priv) == 0)
		hook_nft_exit((void *)pkt, (void *)priv, ret);
	return 0;
}

/*
 * fib_validate_source(skb, src, dst, dscp, oif, dev, idev, itag): rp_filter.
 * Eight arguments: x86 trampolines take more than six only since 6.6
 * ("bpf, x86: allow function arguments up to 12"), so on older kernels the
 * fexit is refused and the kretprobe twin takes over.
 */
SEC("fexit/fib_validate_source")
int BPF_PROG(fib_validate_source__fexit, struct sk_buff *skb, __be32 src, __be32 dst, __u8 dscp, int oif,
	     struct net_device *dev)
{
	hook_rp_filter_exit(skb, dev, (int)func_ret(ctx));
	return 0;
}

SEC("kprobe/fib_validate_source")
int fib_validate_source__kprobe(struct pt_regs *ctx)
{
	/* BPF_KPROBE of libbpf 1.1 stops at five arguments; dev is the sixth. */
	stash_push(STASH_RP_FILTER, PT_REGS_PARM1(ctx), KPROBE_PARM6(ctx));
	return 0;
}

SEC("kretprobe/fib_validate_source")
int BPF_KRETPROBE(fib_validate_source__kretprobe, int ret)
{
	__u64 skb, dev;

	if (stash_pop(STASH_RP_FILTER, &skb, &dev) == 0)
		hook_rp_filter_exit((void *)skb, (void *)dev, ret);
	return 0;
}

/* ip_route_input_noref(skb, daddr, saddr, dscp, dev): the input route lookup. */
SEC("fexit/ip_route_input_noref")
int BPF_PROG(ip_route_input_noref__fexit, struct sk_buff *skb, __be32 daddr, __be32 saddr, __u8 dscp,
	     struct net_device *dev)
{
	hook_route_input_exit(skb, dev, (__s32)func_ret(ctx));
	return 0;
}

SEC("kprobe/ip_route_input_noref")
int BPF_KPROBE(ip_route_input_noref__kprobe, void *skb, __be32 daddr, __be32 saddr, __u8 dscp, void *dev)
{
	stash_push(STASH_ROUTE_INPUT, (__u64)skb, (__u64)dev);
	return 0;
}

SEC("kretprobe/ip_route_input_noref")
int BPF_KRETPROBE(ip_route_input_noref__kretprobe, int ret)
{
	__u64 skb, dev;

	if (stash_pop(STASH_ROUTE_INPUT, &skb, &dev) == 0)
		hook_route_input_exit((void *)skb, (void *)dev, ret);
	return 0;
}

/*
 * ipt_do_table(priv = struct xt_table *, skb, state): an iptables-legacy
 * table's verdict (ip_tables module; 5.16+ argument order, see compat.h).
 */
SEC("fexit/ipt_do_table")
int BPF_PROG(ipt_do_table__fexit, void *table, struct sk_buff *skb, void *state)
{
	hook_ipt_exit(table, skb, state, (__u32)func_ret(ctx));
	return 0;
}

SEC("kprobe/ipt_do_table")
int BPF_KPROBE(ipt_do_table__kprobe, void *arg1, void *arg2, void *arg3)
{
	__u64 table = (__u64)arg1, skb = (__u64)arg2, state = (__u64)arg3;

	ipt_do_table_args(&table, &skb, &state); /* compat.h: (skb, state, table) before 5.16 */
	stash_push3(STASH_IPT_TABLE, table, skb, state);
	return 0;
}

SEC("kretprobe/ipt_do_table")
int BPF_KRETPROBE(ipt_do_table__kretprobe, unsigned int ret)
{
	__u64 table, skb, state;

	if (stash_pop3(STASH_IPT_TABLE, &table, &skb, &state) == 0)
		hook_ipt_exit((void *)table, (void *)skb, (void *)state, ret);
	return 0;
}

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Kernel-version differences, one place, each named with the change that
 * made it.  Everything here resolves at load time through CO-RE, so one
 * object runs on every kernel from 5.5 (tp_btf) on.
 */
#ifndef PKTPATH_COMPAT_H
#define PKTPATH_COMPAT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "kernel_types.h"

/*
 * bpf_rdonly_cast (6.2+, commit a35b9af4ec2c "bpf: Add a kfunc for generic
 * type cast") turns a scalar into an untrusted pointer to a kernel BTF type,
 * so the verifier lets us read through skb->head directly.  It is the only
 * way to read packet headers where lockdown refuses bpf_probe_read_kernel
 * ("unknown func bpf_probe_read_kernel#113").  Declared weak: on older
 * kernels libbpf resolves it to 0 (libbpf >= 1.1) and have_rdonly_cast()
 * becomes a constant 0 the verifier prunes on.
 */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

static __always_inline int have_rdonly_cast(void)
{
	return bpf_rdonly_cast != 0;
}

/*
 * KREAD(direct, ptr, field...): one field of a kernel object the shared path
 * code reads, whoever handed it the pointer.  tp_btf and fentry pass typed
 * (trusted) pointers; kprobes pass registers, which CAST() makes typed only
 * where bpf_rdonly_cast exists (6.2+).  So with the kfunc: the direct load
 * `direct` (the only way under lockdown); without it (6.1, where kprobes and
 * bpf_probe_read_kernel are both allowed): BPF_CORE_READ.  The test folds to
 * a constant and the verifier never sees the branch not taken, so a kprobe's
 * raw register is never dereferenced on 6.1 ("R1 invalid mem access
 * 'scalar'" is what the direct load gave there).
 */
#define KREAD(direct, ptr, ...) \
	(have_rdonly_cast() ? (direct) : BPF_CORE_READ(ptr, __VA_ARGS__))

/* The same, for a 16-byte device name copied into `out`. */
#define KREAD_IFNAME(out, dev)                                              \
	do {                                                                \
		if (have_rdonly_cast())                                     \
			__builtin_memcpy((out), (dev)->name, 16);           \
		else                                                        \
			bpf_core_read((out), 16, &(dev)->name);             \
	} while (0)

/*
 * ipt_do_table(): iptables-legacy's rule walk for one table at one hook.
 * Since 5.16 ("netfilter: iptables: allow use of ipt_do_table as hook
 * function", Florian Westphal) it is itself the nf_hookfn:
 *     ipt_do_table(void *priv = struct xt_table *, skb, state);
 * before (5.10), the per-table hooks called it as (skb, state, table).
 * Function signatures are not CO-RE relocatable, so userspace reads the
 * order from the function's BTF (ip_tables module) and sets this constant
 * before the load (exporter/loader/engine.py: kernel_constants); the
 * verifier prunes the order not taken.  The fexit and the kretprobe share
 * one return body that applies it (pktpath.bpf.c: on_ipt_table_return); only
 * the kretprobe ever meets the old order, since the fexit reads its return
 * value with bpf_get_func_ret (5.17+).  Fields of struct xt_table (module BTF:
 * x_tables, and repeated in every *_tables module) are read with
 * BPF_CORE_READ only: a field relocation resolves across those duplicates, a
 * type-id one is ambiguous (see hook_nft_exit).
 */
const volatile __u32 ipt_do_table_skb_first = 0;

/* (table, skb, state) from ipt_do_table's three arguments as they came. */
static __always_inline void ipt_do_table_args(__u64 *a1, __u64 *a2, __u64 *a3)
{
	__u64 skb = *a1, state = *a2;

	if (!ipt_do_table_skb_first)
		return;
	*a1 = *a3;
	*a2 = skb;
	*a3 = state;
}

/*
 * nft_do_chain(pkt, chain): the hook state is pkt->state since 5.15
 * ("netfilter: nf_tables: remove xt_action_param from nft_pktinfo"); before,
 * it sat in the x_tables compatibility member, pkt->xt.state (5.10).  Both
 * are field relocations, which resolve although struct nft_pktinfo exists in
 * two module BTFs once nft_compat is loaded (see hook_nft_exit).
 */
static __always_inline const struct nf_hook_state *nft_pktinfo_state(void *pkt)
{
	if (bpf_core_field_exists(((struct nft_pktinfo *)pkt)->state))
		return BPF_CORE_READ((struct nft_pktinfo *)pkt, state);
	return BPF_CORE_READ((struct nft_pktinfo___xt *)pkt, xt.state);
}

/*
 * trace_kfree_skb(skb, location) gained `enum skb_drop_reason reason` in
 * 5.17 (commit c504e5c2f964 "net: skb: introduce kfree_skb_reason()") and
 * `struct sock *rx_sk` in 6.12; tp_btf exposes them as ctx[2] and ctx[3].
 * Reading ctx[2] on an older kernel is rejected by the verifier (the
 * tracepoint has two arguments there), so the read sits behind a CO-RE
 * existence check that libbpf folds to a constant and the verifier prunes:
 * the enum came with the argument.  Before 5.17 the drop keeps what the
 * tracepoint has always given, `location` (the caller of kfree_skb), and
 * drops.bpf.h adds evidence for a reason in its place (DROP_EVIDENCE_*).
 */
static __always_inline int kernel_has_drop_reasons(void)
{
	return bpf_core_type_exists(enum skb_drop_reason);
}

static __always_inline __u32 kfree_skb_reason_arg(unsigned long long *ctx)
{
	if (kernel_has_drop_reasons())
		return (__u32)ctx[2];
	return 0;
}

/*
 * Since 5.17 the kfree_skb tracepoint carries only real drops, but between
 * 5.17 and 6.0 some paths still passed SKB_CONSUMED through it (fixed by
 * "net: skb: introduce SKB_CONSUMED reason", 6.1+ routes those to
 * trace_consume_skb).  Filter it by name, never by number.
 */
static __always_inline int reason_is_consumed(__u32 reason)
{
	if (!bpf_core_enum_value_exists(enum skb_drop_reason, SKB_CONSUMED))
		return 0;
	return reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED);
}

/* The sixth argument register of a kprobe (libbpf 1.1 has no PT_REGS_PARM6). */
#if defined(__TARGET_ARCH_x86)
#define KPROBE_PARM6(ctx) ((ctx)->r9)
#elif defined(__TARGET_ARCH_arm64)
#define KPROBE_PARM6(ctx) (((const struct user_pt_regs *)(ctx))->regs[5])
#else
#error "pktpath: KPROBE_PARM6 is defined for x86 and arm64 only"
#endif

#endif /* PKTPATH_COMPAT_H */

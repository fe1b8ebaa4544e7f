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
 * trace_kfree_skb(skb, location) gained `enum skb_drop_reason reason` in
 * 5.17 (commit c504e5c2f964 "net: skb: introduce kfree_skb_reason()") and
 * `struct sock *rx_sk` in 6.12; tp_btf exposes them as ctx[2] and ctx[3].
 * Reading ctx[2] on an older kernel is rejected by the verifier, so the read
 * sits behind a CO-RE existence check that libbpf folds to a constant and
 * the verifier prunes.  Reason 0 (SKB_NOT_DROPPED_YET) then means
 * "this kernel names no reasons".
 */
static __always_inline __u32 kfree_skb_reason_arg(unsigned long long *ctx)
{
	if (bpf_core_type_exists(enum skb_drop_reason))
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

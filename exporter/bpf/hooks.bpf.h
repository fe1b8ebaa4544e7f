/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Function hooks of the original linux-packet-tracer's probe set, for stock
 * kernels where fentry/fexit (best) or kprobes (fallback) attach: what each
 * hop means, written once and called by both families' thin wrappers in
 * pktpath.bpf.c.  They feed the same hop events as the tracepoints, plus
 * verdict counters for every packet (unsampled): netfilter chain verdicts,
 * rp_filter results, route lookup results.
 *
 * Reading memory behind untyped pointers (nft chain/table names) uses
 * bpf_probe_read_kernel: fine here, since kernels that let these hooks attach
 * are not locked down (lockdown refuses fentry and kprobes alike).
 */
#ifndef PKTPATH_HOOKS_H
#define PKTPATH_HOOKS_H

#include "maps.bpf.h"
#include "drops.bpf.h"
#include "paths.bpf.h"

/* ---- one hook, two attach families ---------------------------------------
 *
 * A function hook is written once, as a body taking up to three of the
 * function's arguments (raw u64s, by their 1-based position in its signature;
 * position 0 passes 0), and these macros make both programs of each family
 * the loader chooses between (exporter/loader/probes.py: <prog>__<family>):
 *
 *   FUNC_HOOK(prog, func, on_call, a, b, c)
 *       fentry/func and kprobe/func, each calling on_call(a, b, c).
 *   FUNC_HOOK_RETURN(prog, func, slot, on_return, a, b, c)
 *       fexit/func calling on_return(a, b, c, ret); kprobe/func stashing a, b,
 *       c under `slot` for kretprobe/func, which pops them and calls the same.
 *   FUNC_HOOK_AROUND(prog, func, slot, on_call, on_return, a, b, c)
 *       both: the entry body at fentry (and kprobe, which also stashes), the
 *       return body at fexit (and kretprobe).
 *
 * fentry/fexit arguments come from the trampoline's ctx array (the verifier
 * types them from the function's BTF); kprobe arguments from registers.  The
 * bodies type them with CAST (packet.bpf.h), which serves both.  A position
 * past the function's last argument is refused by the verifier for fentry
 * ("func 'x' doesn't have N-th argument"), so each hook names only what it
 * reads.
 */
#define FENTRY_ARG_0 0
#define FENTRY_ARG_1 ctx[0]
#define FENTRY_ARG_2 ctx[1]
#define FENTRY_ARG_3 ctx[2]
#define FENTRY_ARG_5 ctx[4]
#define FENTRY_ARG_6 ctx[5]
#define KPROBE_ARG_0 0
#define KPROBE_ARG_1 PT_REGS_PARM1(ctx)
#define KPROBE_ARG_2 PT_REGS_PARM2(ctx)
#define KPROBE_ARG_3 PT_REGS_PARM3(ctx)
#define KPROBE_ARG_5 PT_REGS_PARM5(ctx)
#define KPROBE_ARG_6 KPROBE_PARM6(ctx) /* compat.bpf.h: libbpf 1.1 stops at PARM5 */

/* An fexit program's return value, whatever the function's arity (5.17+). */
static __always_inline long func_ret(void *ctx)
{
	__u64 ret = 0;

	bpf_get_func_ret(ctx, &ret);
	return (long)ret;
}

/*
 * The pieces: each program of a family, in the order the loader lists them
 * (an fentry before its fexit, a kprobe before its kretprobe; it attaches
 * them in reverse, returns first: engine.py, attach_pair).
 *
 * pktpath.bpf.o gets fentry/fexit and kprobe/kretprobe.  window.bpf.o (the
 * same source with PKTPATH_WINDOW_OBJECT) gets each kprobe body built as a
 * kprobe.multi program instead: never attached by itself, the sampling windows
 * reach it by a tail call from window_call (pktpath.bpf.c), one kprobe.multi
 * link over every path function hook, so that a window's function hooks
 * detach in one step (exporter/loader/window_links.py).  The twin must be a
 * kprobe.multi program too: a tail call needs its target's program type and
 * expected attach type to match the caller's.  A second object, not more
 * programs in the first: libbpf copies every program of an object it opens,
 * and the twins cost an agent that never uses them (a tracepoint-only kernel,
 * a kernel without kprobe.multi) 1 MB of memory (docs/benchmarks.md).
 */
#define KPROBE_PROG_AS(kind, suffix, prog, func, on_call, a, b, c, also)               \
	SEC(kind "/" #func)                                                            \
	int prog##suffix(struct pt_regs *ctx)                                          \
	{                                                                              \
		on_call(KPROBE_ARG_##a, KPROBE_ARG_##b, KPROBE_ARG_##c);               \
		also;                                                                  \
		return 0;                                                              \
	}
#define KRETPROBE_PROG_AS(kind, suffix, prog, func, slot, on_return)                    \
	SEC(kind "/" #func)                                                            \
	int prog##suffix(struct pt_regs *ctx)                                          \
	{                                                                              \
		__u64 x, y, z;                                                         \
                                                                                       \
		if (stash_pop3(slot, PT_REGS_SP(ctx), &x, &y, &z) == 0)                \
			on_return(x, y, z, (long)PT_REGS_RC(ctx));                     \
		return 0;                                                              \
	}
#ifdef PKTPATH_WINDOW_OBJECT
#define FENTRY_PROG(prog, func, on_call, a, b, c)
#define FEXIT_PROG(prog, func, on_return, a, b, c)
#define KPROBE_PROG(prog, func, on_call, a, b, c, also) \
	KPROBE_PROG_AS("kprobe.multi", __kmulti, prog, func, on_call, a, b, c, also)
#define KRETPROBE_PROG(prog, func, slot, on_return) \
	KRETPROBE_PROG_AS("kretprobe.multi", __kmultiret, prog, func, slot, on_return)
#else
#define FENTRY_PROG(prog, func, on_call, a, b, c)                                      \
	SEC("fentry/" #func)                                                           \
	int prog##__fentry(unsigned long long *ctx)                                    \
	{                                                                              \
		on_call(FENTRY_ARG_##a, FENTRY_ARG_##b, FENTRY_ARG_##c);               \
		return 0;                                                              \
	}
#define FEXIT_PROG(prog, func, on_return, a, b, c)                                     \
	SEC("fexit/" #func)                                                            \
	int prog##__fexit(unsigned long long *ctx)                                     \
	{                                                                              \
		on_return(FENTRY_ARG_##a, FENTRY_ARG_##b, FENTRY_ARG_##c, func_ret(ctx)); \
		return 0;                                                              \
	}
/* `also`: a call after the entry body (the stash of a kprobe with a kretprobe twin). */
#define KPROBE_PROG(prog, func, on_call, a, b, c, also) \
	KPROBE_PROG_AS("kprobe", __kprobe, prog, func, on_call, a, b, c, also)
#define KRETPROBE_PROG(prog, func, slot, on_return) \
	KRETPROBE_PROG_AS("kretprobe", __kretprobe, prog, func, slot, on_return)
#endif
#define STASH(slot, a, b, c) \
	stash_push3(slot, PT_REGS_SP(ctx), KPROBE_ARG_##a, KPROBE_ARG_##b, KPROBE_ARG_##c)

static __always_inline void no_call(__u64 a, __u64 b, __u64 c)
{
}

#define FUNC_HOOK(prog, func, on_call, a, b, c)                                        \
	FENTRY_PROG(prog, func, on_call, a, b, c)                                      \
	KPROBE_PROG(prog, func, on_call, a, b, c, (void)0)

#define FUNC_HOOK_RETURN(prog, func, slot, on_return, a, b, c)                         \
	FEXIT_PROG(prog, func, on_return, a, b, c)                                     \
	KPROBE_PROG(prog, func, no_call, a, b, c, STASH(slot, a, b, c))                \
	KRETPROBE_PROG(prog, func, slot, on_return)

#define FUNC_HOOK_AROUND(prog, func, slot, on_call, on_return, a, b, c)                \
	FENTRY_PROG(prog, func, on_call, a, b, c)                                      \
	FEXIT_PROG(prog, func, on_return, a, b, c)                                     \
	KPROBE_PROG(prog, func, on_call, a, b, c, STASH(slot, a, b, c))                \
	KRETPROBE_PROG(prog, func, slot, on_return)

#define NF_VERDICT_MASK 0xff
#define NF_DROP 0
#define NF_STOLEN 2
#define QUEUE_XMIT_WINDOW_NS (50 * 1000000ULL)

static __always_inline void counter_inc(void *map, void *key)
{
	__u64 *v = bpf_map_lookup_elem(map, key);

	if (!v) {
		__u64 zero = 0;

		bpf_map_update_elem(map, key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(map, key);
		if (!v) {
			stat_inc(STAT_VERDICT_MAP_FULL);
			return;
		}
	}
	*v += 1; /* per-CPU value */
}

/* nf_hook_slow(skb, state, ...): a netfilter hook is about to run its chains. */
static __always_inline void hook_nf_entry(struct sk_buff *skb, const struct nf_hook_state *state)
{
	struct hop_event *ev = path_event(skb, 1, HOP_NF_HOOK, KREAD(state->in, state, in));

	if (!ev)
		return;
	ev->nf_family = KREAD(state->pf, state, pf);
	ev->nf_hook = KREAD(state->hook, state, hook);
	read_ifname(KREAD(state->out, state, out), ev->out_ifname);
	bpf_ringbuf_submit(ev, 0);
}

/* ... and its verdict: 1 accepted, < 0 dropped (-EPERM unless the rule said), 0 stolen/queued. */
static __always_inline void hook_nf_exit(struct sk_buff *skb, const struct nf_hook_state *state, int ret)
{
	struct hop_event *ev = path_event(skb, 0, HOP_NF_HOOK, 0); /* a dropped skb is already freed */

	if (!ev)
		return;
	ev->nf_family = KREAD(state->pf, state, pf);
	ev->nf_hook = KREAD(state->hook, state, hook);
	ev->phase = 1;
	ev->verdict = ret;
	bpf_ringbuf_submit(ev, 0);
}

/*
 * nft_do_chain(pkt, chain) returned `ret`: count the chain's verdict, per table.
 * Everything is read with BPF_CORE_READ (field relocations), never through
 * bpf_rdonly_cast: struct nft_pktinfo lives in module BTF, and once nft_compat
 * is loaded it exists twice (nf_tables and nft_compat), which makes a type-id
 * relocation ambiguous for libbpf ("relocation decision ambiguity") while
 * field offsets, equal in both, still resolve.
 */
/*
 * The verdict of one netfilter table at one hook, as both nft_do_chain and
 * ipt_do_table return it.  Since NF_DROP_REASON (6.8) an nf_tables drop frees
 * the skb inside nf_tables, with its drop reason, and returns NF_STOLEN with
 * the errno in the upper 16 bits; a real steal (queueing, a target that took
 * the packet) carries no errno.  x_tables does not do this today; the same
 * reading serves it should it adopt the convention.
 */
static __always_inline void nf_verdict_fill(struct nf_verdict_key *key, const struct nf_hook_state *state,
					    __u32 ret)
{
	key->family = BPF_CORE_READ(state, pf);
	key->hook = BPF_CORE_READ(state, hook);
	key->verdict = ret & NF_VERDICT_MASK;
	if (key->verdict == NF_STOLEN && (ret >> 16))
		key->verdict = NF_DROP;
}

/* The hop event of a table's verdict: what nf_verdict_fill found. */
static __always_inline void nf_verdict_event(struct hop_event *ev, const struct nf_verdict_key *key)
{
	ev->nf_family = key->family;
	ev->nf_hook = key->hook;
	ev->phase = 1;
	ev->verdict = key->verdict;
}

static __always_inline void hook_nft_exit(void *pkt_ptr, void *priv, __u32 ret)
{
	struct nft_pktinfo *pkt = pkt_ptr;
	struct nft_chain *chain = priv;
	struct nf_verdict_key key = {};
	const struct nf_hook_state *state = nft_pktinfo_state(pkt); /* compat.bpf.h: pkt->xt.state before 5.15 */
	struct sk_buff *skb = BPF_CORE_READ(pkt, skb);
	struct hop_event *ev;
	char *name;

	nf_verdict_fill(&key, state, ret);
	name = BPF_CORE_READ(chain, table, name);
	bpf_probe_read_kernel_str(key.table, sizeof(key.table), name);
	counter_inc(&nf_verdicts, &key);

	ev = path_event(skb, 0, HOP_NF_CHAIN, 0);
	if (!ev) {
		/* A drop frees the skb inside nf_tables: the drop hop untracked it before
		 * this exit, so use the path remembered on entry. */
		struct cpu_state *st = this_cpu_state();

		if (!st || !st->nft_path || !paths_config())
			return;
		ev = event_start(HOP_NF_CHAIN, st->nft_path, 0, 0);
		st->nft_path = 0;
		if (!ev)
			return;
	}
	nf_verdict_event(ev, &key);
	bpf_probe_read_kernel_str(ev->detail, 16, name);
	bpf_probe_read_kernel_str(ev->detail + 16, 16, BPF_CORE_READ(chain, name));
	bpf_ringbuf_submit(ev, 0);
}

/* nft_do_chain entry: remember which followed packet this CPU evaluates (nesting
 * on one CPU, a REJECT's reply inside a chain, overwrites it: that reply's chain
 * line is then attributed to it, which is what happened last on the CPU). */
static __always_inline void hook_nft_entry(void *pkt_ptr)
{
	struct sk_buff *skb = BPF_CORE_READ((struct nft_pktinfo *)pkt_ptr, skb);
	struct cpu_state *st = following_cpu_state();
	struct track *t;

	if (!st)
		return;
	t = track_lookup((__u64)skb);
	st->nft_path = t ? t->path_id : 0;
}

/*
 * ipt_do_table(table, skb, state) returned `ret`: iptables-legacy's verdict for
 * one table at one hook, counted like nft_do_chain's (same counter, same
 * labels) and shown as the same kind of hop.  A legacy table has no chain
 * object: the built-in chain is the hook's (INPUT for NF_INET_LOCAL_IN ...),
 * named by userspace from nf_hook.  Raw pointers and BPF_CORE_READ, as for
 * nft (struct xt_table exists in several module BTFs), so the kretprobe twin
 * shares this.  The skb is still alive here: nf_hook_slow frees a dropped
 * packet only after this returns, so the path is found by its pointer.
 */
static __always_inline void hook_ipt_exit(void *table_ptr, void *skb, void *state_ptr, __u32 ret)
{
	struct xt_table *table = table_ptr;
	const struct nf_hook_state *state = state_ptr;
	struct nf_verdict_key key = {};
	struct hop_event *ev;

	nf_verdict_fill(&key, state, ret);
	BPF_CORE_READ_STR_INTO(&key.table, table, name);
	counter_inc(&nf_verdicts, &key);

	ev = path_event(skb, 0, HOP_IPT_TABLE, 0);
	if (!ev)
		return;
	nf_verdict_event(ev, &key);
	__builtin_memcpy(ev->detail, key.table, 15); /* the table half of detail, NUL-terminated */
	bpf_ringbuf_submit(ev, 0);
}

/*
 * __ip_queue_xmit / ip6_xmit entry: a socket (TCP, SCTP) hands a segment to
 * IP.  Its IP header does not exist yet, so the packet cannot be sampled
 * here; the path starts moments later at ip_output, on this CPU, for the
 * same skb.  So the entry is remembered and reported then, with its own
 * timestamp (the assembler orders hops by time), by queue_xmit_report().
 */
static __always_inline void hook_queue_xmit_entry(void *skb)
{
	struct cpu_state *st = following_cpu_state();

	if (!st)
		return;
	st->qx_skb = (__u64)skb;
	st->qx_ts = bpf_ktime_get_ns();
}

static __always_inline void queue_xmit_report(void *skb)
{
	struct cpu_state *st = this_cpu_state();
	struct hop_event *ev;
	__u64 ts;

	if (!st || st->qx_skb != (__u64)skb)
		return;
	ts = st->qx_ts;
	st->qx_skb = 0;
	/* The pointer match is the test; the time bound only retires a slot whose
	 * packet never reached ip_output (dropped at LOCAL_OUT) before its pointer
	 * comes back in another packet that skips ip_queue_xmit (UDP).  Generous:
	 * under emulation (TCG) the call alone takes ~0.3 ms before any probe. */
	if (bpf_ktime_get_ns() - ts > QUEUE_XMIT_WINDOW_NS)
		return;
	ev = path_event(skb, 1, HOP_IP_QUEUE_XMIT, 0);
	if (!ev)
		return;
	ev->ts_ns = ts;
	bpf_ringbuf_submit(ev, 0);
}

/*
 * The verdict hooks below take raw pointers and read with BPF_CORE_READ, so the
 * kretprobe twins work without bpf_rdonly_cast (kernels before 6.2, where the
 * fexit of an 8-argument function is also refused before 6.6).
 */
static __always_inline void verdict_event(void *skb, void *dev, __u32 hop, __s32 ret, __s16 route_error)
{
	struct hop_event *ev = path_event(skb, 0, hop, 0);

	if (!ev)
		return;
	BPF_CORE_READ_STR_INTO(&ev->ifname, (struct net_device *)dev, name);
	ev->ifindex = BPF_CORE_READ((struct net_device *)dev, ifindex);
	ev->phase = 1;
	ev->verdict = ret;
	ev->route_error = route_error;
	bpf_ringbuf_submit(ev, 0);
}

/* fib_validate_source(skb, ..., dev, ...) returned `ret`: the rp_filter check. */
static __always_inline void hook_rp_filter_exit(void *skb, void *dev, int ret)
{
	struct rp_filter_key key = { .failed = ret < 0, .ret = ret };

	BPF_CORE_READ_STR_INTO(&key.ifname, (struct net_device *)dev, name);
	counter_inc(&rp_filter_checks, &key);
	drop_note_rp_filter(skb, ret); /* drops.bpf.h: the reason of the drop that follows, where the kernel names none */
	verdict_event(skb, dev, HOP_RP_FILTER, ret, 0);
}

/*
 * ip_route_input_noref(skb, ..., dev) returned `ret`: 0 is a route found.
 * Before 6.13 a miss is -errno; since "net: ip: make ip_route_input_noref()
 * return drop reasons" (6.13) it is an enum skb_drop_reason.  The counter
 * keeps the raw value; userspace reads which convention from the function's
 * BTF return type.
 *
 * A miss on a forwarding router is not an error return: ip_route_input_slow()
 * installs an error route (dst.input = ip_error) and returns 0; the packet
 * dies later in ip_error().  The route's dst.error (stored positive:
 * rth->dst.error = -err) says why: ENETUNREACH no route, EINVAL a blackhole
 * route, EHOSTUNREACH an unreachable route or forwarding off, EACCES a
 * prohibit route.  It is kept apart from `ret`, because a -EINVAL returned
 * directly is a martian, not a blackhole.
 */
static __always_inline void hook_route_input_exit(void *skb, void *dev, __s32 ret)
{
	struct route_key key = { .ret = ret };

	if (ret == 0) {
		unsigned long refdst = BPF_CORE_READ((struct sk_buff *)skb, _skb_refdst);
		struct dst_entry *dst = (struct dst_entry *)(refdst & ~1UL);

		if (dst) {
			short err = BPF_CORE_READ(dst, error);

			key.route_error = err < 0 ? -err : err;
		}
	}
	counter_inc(&route_lookups, &key);
	verdict_event(skb, dev, HOP_ROUTE_INPUT, ret, key.route_error);
}

/* ---- kprobe -> kretprobe argument stash -------------------------------
 *
 * A kprobe and its kretprobe are two probes, and they do not always both run
 * for a call: the kernel skips a BPF program that fires while another runs on
 * the CPU (bpf_prog_active), a kretprobe can run out of instances, and a
 * sampling window attaches and detaches the path hooks' pairs while calls are
 * in flight.  So an entry can wait for a return that never comes, and a return
 * can come whose call pushed nothing.  A return therefore looks for its own
 * call: the innermost entry of its function pushed at its stack pointer.  On
 * x86-64 the kprobe sees the stack pointer at the function's first
 * instruction (pointing at the return address) and the kretprobe sees it after
 * the return (8 bytes higher, or 0-16 depending on the kernel's trampoline);
 * two calls pending on one CPU are at least a caller's frame apart, or on
 * different stacks.  Entries above the one found were pushed by calls nested in
 * it, which have all returned: their returns were lost, and they go.  A return
 * whose entry is not there reports nothing and leaves the stack as it is.
 * Every loss counts in STAT_STASH_MISMATCH (kretprobe_args_lost). */

enum stash_fn { STASH_NF_HOOK = 1, STASH_NFT_CHAIN, STASH_RP_FILTER, STASH_ROUTE_INPUT, STASH_IPT_TABLE };

#define STASH_SP_SLACK 64 /* bytes: far less than any frame between two pending calls */

static __always_inline void stash_push3(__u32 fn, __u64 sp, __u64 a, __u64 b, __u64 c)
{
	__u32 zero = 0;
	struct stash *st = bpf_map_lookup_elem(&kstash, &zero);
	__u32 d;

	if (!st)
		return;
	d = st->depth;
	if (d >= STASH_DEPTH) {
		/* Full: the oldest entry is the likeliest to be one whose return was
		 * lost (nesting four deep is rare); it goes, the rest move down. */
#pragma unroll
		for (int i = 0; i < STASH_DEPTH - 1; i++) {
			st->fn[i] = st->fn[i + 1];
			st->sp[i] = st->sp[i + 1];
			st->args[i][0] = st->args[i + 1][0];
			st->args[i][1] = st->args[i + 1][1];
			st->args[i][2] = st->args[i + 1][2];
		}
		stat_inc(STAT_STASH_MISMATCH);
		d = STASH_DEPTH - 1;
	}
	st->fn[d & (STASH_DEPTH - 1)] = fn;
	st->sp[d & (STASH_DEPTH - 1)] = sp;
	st->args[d & (STASH_DEPTH - 1)][0] = a;
	st->args[d & (STASH_DEPTH - 1)][1] = b;
	st->args[d & (STASH_DEPTH - 1)][2] = c;
	st->depth = d + 1;
}

/* The arguments of this return's own call of `fn` (`sp`: the stack pointer at
 * the return), or -1 when its call pushed none. */
static __always_inline int stash_pop3(__u32 fn, __u64 sp, __u64 *a, __u64 *b, __u64 *c)
{
	__u32 zero = 0;
	struct stash *st = bpf_map_lookup_elem(&kstash, &zero);
	__u32 depth;

	if (!st)
		return -1;
	depth = st->depth;
#pragma unroll
	for (int i = STASH_DEPTH - 1; i >= 0; i--) {
		/* |sp - entry sp| <= slack, as one unsigned comparison */
		if (i < depth && st->fn[i] == fn && sp - st->sp[i] + STASH_SP_SLACK <= 2 * STASH_SP_SLACK) {
			*a = st->args[i][0];
			*b = st->args[i][1];
			*c = st->args[i][2];
			if (depth - 1 - i)
				stat_add(STAT_STASH_MISMATCH, depth - 1 - i);
			st->depth = i;
			return 0;
		}
	}
	stat_inc(STAT_STASH_MISMATCH);
	return -1;
}

#endif /* PKTPATH_HOOKS_H */

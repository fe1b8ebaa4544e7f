/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Always-on drop counting: one per-CPU counter per (reason, device, netns, protocol[, call site]). */
#ifndef PKTPATH_DROPS_H
#define PKTPATH_DROPS_H

#include "maps.bpf.h"
#include "packet.bpf.h"

/*
 * Fragments dropped when their reassembly times out carry no device: in a
 * reassembly queue skb->dev shares its bytes with the rb-tree node
 * (include/linux/skbuff.h), and ip_expire() gives a device back to the first
 * fragment only, which it frees first (net/ipv4/ip_fragment.c); the others
 * follow from inet_frag_rbtree_purge() on the same CPU, microseconds later.
 * They are counted under that first fragment's device, the queue's interface,
 * when it was freed on this CPU within FRAG_INHERIT_NS and had the index they
 * arrived on.  When the first fragment never arrived, no fragment of the queue
 * names a device: they count under interface "none".
 */
#define FRAG_INHERIT_NS 1000000ULL

static __always_inline int is_frag_timeout(__u32 reason)
{
	return bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_FRAG_REASM_TIMEOUT) &&
	       reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_FRAG_REASM_TIMEOUT);
}

/* Interface and network namespace the drop belongs to. */
static __always_inline void read_location(struct sk_buff *skb, struct drop_key *key)
{
	struct net_device *dev = skb->dev;
	struct frag_owner *fo;
	struct sock *sk;
	__u32 zero = 0;

	if (dev) {
		__builtin_memcpy(key->ifname, dev->name, sizeof(key->ifname));
		key->ifindex = dev->ifindex;
		key->netns = dev->nd_net.net->ns.inum;
		if (is_frag_timeout(key->reason) && (fo = bpf_map_lookup_elem(&frag_owner, &zero))) {
			__builtin_memcpy(fo->ifname, key->ifname, sizeof(fo->ifname));
			fo->ifindex = key->ifindex;
			fo->netns = key->netns;
			fo->ts = bpf_ktime_get_ns();
		}
		return;
	}
	/* Device already detached (e.g. after a failed xmit): keep the ingress
	 * index and take the namespace from the owning socket, if any. */
	key->ifindex = skb->skb_iif;
	sk = skb->sk;
	if (sk) {
		key->netns = sk->__sk_common.skc_net.net->ns.inum;
		return;
	}
	if (is_frag_timeout(key->reason) && (fo = bpf_map_lookup_elem(&frag_owner, &zero)) &&
	    fo->ifindex == key->ifindex && bpf_ktime_get_ns() - fo->ts < FRAG_INHERIT_NS) {
		__builtin_memcpy(key->ifname, fo->ifname, sizeof(key->ifname));
		key->netns = fo->netns;
	}
}

/*
 * Code for kernels without drop reasons only.  The empty asm keeps it a
 * branch: clang would otherwise compute it unconditionally and select the
 * result (the CO-RE test is not a constant to clang), and the verifier
 * prunes only branches.  So kernels with reasons run none of it.
 */
#define IF_NO_DROP_REASONS(stmt)                \
	do {                                    \
		if (!kernel_has_drop_reasons()) { \
			asm volatile("");       \
			stmt;                   \
		}                               \
	} while (0)

/*
 * Fibonacci hash of the key's words onto this CPU's block of slots.
 * Cheap by design: it only spreads the few keys that are hot at a time.
 * The location word is 0 wherever the kernel names drop reasons: it is left
 * out there, so those kernels hash as many words as before it existed.
 */
static __always_inline __u32 slot_index(const __u64 *w)
{
	__u64 x = w[0] ^ w[1] ^ (w[3] * 0x9E3779B97F4A7C15ULL) ^ (w[4] * 0xC2B2AE3D27D4EB4FULL);

	IF_NO_DROP_REASONS(x ^= w[2] * 0x165667B19E3779F9ULL);
	return (__u32)((x * 0x9E3779B97F4A7C15ULL) >> (64 - DROP_SLOT_BITS));
}

/* Does the slot hold this key?  The location word as in slot_index(). */
static __always_inline int slot_holds(const __u64 *s, const __u64 *w)
{
	if (s[0] != w[0] || s[1] != w[1] || s[3] != w[3] || s[4] != w[4])
		return 0;
	IF_NO_DROP_REASONS(if (s[2] != w[2]) return 0);
	return 1;
}

/* ---- kernels without drop reasons (before 5.17) ---------------------------
 *
 * The kfree_skb tracepoint gives the call site (`location`), and the key
 * carries it.  A call site alone does not always tell why: ip_error() frees
 * every packet that met an error route, ip_rcv_finish_core() every packet
 * whose route lookup failed (rp_filter, martians, ...).  Where a newer kernel
 * decides its reason from facts still visible here, the program reports those
 * facts in the reason's place (DROP_EVIDENCE_*, pktpath.h), and userspace
 * derives the reason the newer kernel gives (exporter/decoders/drop_locations.py).
 */

#ifndef EXDEV
#define EXDEV 18 /* errno-base.h: the same on every architecture */
#endif
#define SKB_DST_PTRMASK ~1UL /* _skb_refdst: dst pointer | SKB_DST_NOREF */
/* A note older than this is not about the drop being counted: the drop of a
 * packet that failed rp_filter follows its check at once (ip_rcv_finish_core),
 * within microseconds, or a millisecond under emulation. */
#define RP_FILTER_NOTE_NS (50 * 1000000ULL)

/* The packet whose rp_filter check (fib_validate_source) failed last on this CPU. */
struct rp_filter_note {
	__u64 skb;
	__u64 ts;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rp_filter_note);
} rp_filter_notes SEC(".maps");

/*
 * fib_validate_source() returned `ret` for `skb` (hooks.bpf.h).  -EXDEV is its
 * rp_filter failure (fib_frontend.c, the only -EXDEV of the IPv4 input
 * route): ip_rcv_finish_core() frees that packet next, where 6.1+ names it
 * IP_RPFILTER ("if (err == -EXDEV) drop_reason = ...").  Nothing is written
 * for the packets that pass, and nothing at all where reasons exist.
 */
static __always_inline void drop_note_rp_filter(void *skb, int ret)
{
	__u32 zero = 0;
	struct rp_filter_note *note;

	if (kernel_has_drop_reasons() || ret != -EXDEV)
		return;
	note = bpf_map_lookup_elem(&rp_filter_notes, &zero);
	if (note) {
		note->skb = (__u64)skb;
		note->ts = bpf_ktime_get_ns();
	}
}

/*
 * What decided the reason of this drop on a newer kernel: the rp_filter
 * failure noted above, else the errno of the error route the packet carries
 * (ip_route_input_slow() gives an unroutable packet a route whose input is
 * ip_error() and whose dst.error is ENETUNREACH, EHOSTUNREACH, EINVAL or
 * EACCES), with the receiving device's IPv4 forwarding setting, which
 * ip_error() weighs too.  0 for the many drops with neither.
 */
static __always_inline __u32 drop_evidence(struct sk_buff *skb)
{
	__u32 zero = 0, evidence;
	struct rp_filter_note *note = bpf_map_lookup_elem(&rp_filter_notes, &zero);
	struct dst_entry *dst;
	struct in_device *in_dev;
	struct net_device *dev;
	short err;

	if (note && note->skb == (__u64)skb) {
		note->skb = 0;
		if (bpf_ktime_get_ns() - note->ts < RP_FILTER_NOTE_NS)
			return EXDEV;
	}
	dst = (struct dst_entry *)(skb->_skb_refdst & SKB_DST_PTRMASK);
	if (!dst)
		return 0;
	err = BPF_CORE_READ(dst, error); /* stored positive: rth->dst.error = -err */
	if (err < 0)
		err = -err;
	if (!err)
		return 0;
	evidence = err > DROP_EVIDENCE_ERRNO ? DROP_EVIDENCE_ERRNO : err;
	dev = skb->dev;
	in_dev = dev ? dev->ip_ptr : 0;
	if (in_dev) {
		evidence |= DROP_EVIDENCE_IN_DEV;
		if (in_dev->cnf.data[IPV4_DEVCONF_FORWARDING - 1])
			evidence |= DROP_EVIDENCE_FORWARDING;
	}
	return evidence;
}

/* The tracepoint's reason where the kernel has them, else the evidence above. */
static __always_inline __u32 drop_reason_or_evidence(unsigned long long *ctx, struct sk_buff *skb)
{
	if (kernel_has_drop_reasons())
		return kfree_skb_reason_arg(ctx);
	return drop_evidence(skb);
}

/*
 * Every drop, counted exactly, in two places that userspace adds up:
 *
 * - drop_counts, a per-CPU hash, is the registry of series: a key exists
 *   there before it is counted anywhere, and drops.max_series bounds it.
 * - drop_slots is a direct-mapped cache of DROP_SLOTS_PER_CPU slots per CPU
 *   in front of it.  A slot is claimed once, by the first key that lands on
 *   it after the key is in drop_counts, and is never reassigned by the
 *   kernel, so each slot's counts only grow and the sum stays monotonic.  A
 *   drop whose key owns its slot costs a few compares and two adds instead
 *   of a hash lookup (jhash over the key, bucket walk, key compare): about
 *   20 ns less per dropped packet (docs/benchmarks.md).  A key that collides
 *   with another key's slot keeps using drop_counts: slower, still exact.
 *
 * Userspace reads the slots first, then drop_counts, and adds a slot's
 * counts only to a key it finds in drop_counts.  Deleting a series (a gone
 * pod's netns) retires its slots: SLOT_RETIRED, cleared, then SLOT_FREE at
 * the next scrape (exporter/decoders/counters.py).
 */
static __always_inline void count_drop(struct sk_buff *skb, __u32 reason, __u64 location)
{
	struct drop_key key = {};
	struct drop_value *val;
	struct drop_slot *slot;
	const __u64 *w = (const __u64 *)&key;
	__u32 idx;

	_Static_assert(sizeof(struct drop_key) == 40, "slot_index() and slot_holds() read 5 words");
	key.reason = reason;
	IF_NO_DROP_REASONS(key.location = location);
	read_location(skb, &key);
	read_protocols(skb, &key);

	idx = bpf_get_smp_processor_id() * DROP_SLOTS_PER_CPU + slot_index(w);
	slot = bpf_map_lookup_elem(&drop_slots, &idx);
	if (slot && slot->state == SLOT_CLAIMED && slot_holds((const __u64 *)&slot->key, w)) {
		/* Only this CPU writes its slots: no atomics needed. */
		slot->packets += 1;
		slot->bytes += skb->len;
		return;
	}

	val = bpf_map_lookup_elem(&drop_counts, &key);
	if (!val) {
		struct drop_value zero = {};

		/* -EEXIST means another CPU created the key first: fine, the
		 * lookup below finds it.  Only a full map loses the series. */
		bpf_map_update_elem(&drop_counts, &key, &zero, BPF_NOEXIST);
		val = bpf_map_lookup_elem(&drop_counts, &key);
		if (!val) {
			stat_inc(STAT_DROP_MAP_FULL);
			return;
		}
	}
	/* Per-CPU value: no other CPU writes it, no atomics needed. */
	val->packets += 1;
	val->bytes += skb->len;
	if (slot && slot->state == SLOT_FREE) {
		/* Key first, state last.  A reader racing this sees zero counts,
		 * and skips a half-written key: it is in no drop_counts read. */
		__builtin_memcpy(&slot->key, &key, sizeof(key));
		slot->packets = 0;
		slot->bytes = 0;
		slot->state = SLOT_CLAIMED;
	}
}

#endif /* PKTPATH_DROPS_H */

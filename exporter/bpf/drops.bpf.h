/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Always-on drop counting: one per-CPU counter per (reason, device, netns, protocol). */
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
 * Fibonacci hash of the key's four words onto this CPU's block of slots.
 * Cheap by design: it only spreads the few keys that are hot at a time.
 */
static __always_inline __u32 slot_index(const __u64 *w)
{
	__u64 x = w[0] ^ w[1] ^ (w[2] * 0x9E3779B97F4A7C15ULL) ^ (w[3] * 0xC2B2AE3D27D4EB4FULL);

	return (__u32)((x * 0x9E3779B97F4A7C15ULL) >> (64 - DROP_SLOT_BITS));
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
static __always_inline void count_drop(struct sk_buff *skb, __u32 reason)
{
	struct drop_key key = {};
	struct drop_value *val;
	struct drop_slot *slot;
	const __u64 *w = (const __u64 *)&key;
	__u32 idx;

	_Static_assert(sizeof(struct drop_key) == 32, "slot_index() and the compare below read 4 words");
	key.reason = reason;
	read_location(skb, &key);
	read_protocols(skb, &key);

	idx = bpf_get_smp_processor_id() * DROP_SLOTS_PER_CPU + slot_index(w);
	slot = bpf_map_lookup_elem(&drop_slots, &idx);
	if (slot && slot->state == SLOT_CLAIMED) {
		const __u64 *s = (const __u64 *)&slot->key;

		if (s[0] == w[0] && s[1] == w[1] && s[2] == w[2] && s[3] == w[3]) {
			/* Only this CPU writes its slots: no atomics needed. */
			slot->packets += 1;
			slot->bytes += skb->len;
			return;
		}
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

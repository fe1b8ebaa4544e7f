/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Always-on drop counting: one per-CPU counter per (reason, device, netns, protocol). */
#ifndef PKTPATH_DROPS_H
#define PKTPATH_DROPS_H

#include "maps.h"
#include "packet.h"

/* Interface and network namespace the drop belongs to. */
static __always_inline void read_location(struct sk_buff *skb, struct drop_key *key)
{
	struct net_device *dev = skb->dev;
	struct sock *sk;

	if (dev) {
		__builtin_memcpy(key->ifname, dev->name, sizeof(key->ifname));
		key->ifindex = dev->ifindex;
		key->netns = dev->nd_net.net->ns.inum;
		return;
	}
	/* Device already detached (e.g. after a failed xmit): keep the ingress
	 * index and take the namespace from the owning socket, if any. */
	key->ifindex = skb->skb_iif;
	sk = skb->sk;
	if (sk)
		key->netns = sk->__sk_common.skc_net.net->ns.inum;
}

static __always_inline void count_drop(struct sk_buff *skb, __u32 reason)
{
	struct drop_key key = {};
	struct drop_value *val;

	key.reason = reason;
	read_location(skb, &key);
	read_protocols(skb, &key.l3_proto, &key.l4_proto);

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
}

#endif /* PKTPATH_DROPS_H */

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * pktpath kernel side: always-on drop counting.
 *
 * Every skb the kernel frees as a drop is counted here, unsampled, in a
 * per-CPU hash keyed by (reason, interface, netns, protocol).  Userspace
 * reads the map at scrape time; no event per packet ever leaves the kernel.
 *
 * Program names follow <hop>__<attach mode>: the loader picks, per hop, the
 * first candidate that loads and attaches (see exporter/loader/probes.py).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include "kernel_types.h"
#include "compat.h"
#include "pktpath.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Sized from config (drops.max_series) by the loader before load. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct drop_key);
	__type(value, struct drop_value);
} drop_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT__MAX);
	__type(key, enum pktpath_stat); /* also puts the enum in BTF for abi.py's check */
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void stat_inc(enum pktpath_stat slot)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &slot);

	if (v)
		*v += 1;
}

/* skb->network_header is (u16)~0 until the stack sets it (skb_network_header_was_set). */
#define NETWORK_HEADER_UNSET ((__u16)~0U)

/*
 * L3/L4 protocol of the packet.  skb->protocol is the ethertype the stack
 * assigned; the L4 protocol comes from the IP header at
 * skb->head + skb->network_header, read through bpf_rdonly_cast (a faulting
 * read yields 0 instead of an oops, so a bogus header costs a label, never
 * the kernel).  IPv6 reports the first next-header; extension headers are
 * rare on the drop path and walking them is not worth the instructions.
 */
static __always_inline void read_protocols(struct sk_buff *skb, struct drop_key *key)
{
	__u16 l3 = bpf_ntohs(skb->protocol);
	__u16 nh_off = skb->network_header;
	unsigned char *nh;

	key->l3_proto = l3;
	if (nh_off == NETWORK_HEADER_UNSET)
		return;
	nh = skb->head + nh_off;
	if (l3 == ETH_P_IP) {
		struct iphdr *ip = bpf_rdonly_cast(nh, bpf_core_type_id_kernel(struct iphdr));

		key->l4_proto = ip->protocol;
	} else if (l3 == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = bpf_rdonly_cast(nh, bpf_core_type_id_kernel(struct ipv6hdr));

		key->l4_proto = ip6->nexthdr;
	}
}

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

	if (reason_is_consumed(reason))
		return;
	key.reason = reason;
	read_location(skb, &key);
	read_protocols(skb, &key);

	val = bpf_map_lookup_elem(&drop_counts, &key);
	if (!val) {
		struct drop_value zero = {};

		/* -EEXIST means another CPU created the key first: fine, the
		 * lookup below finds it.  Only a full map loses the series. */
		if (bpf_map_update_elem(&drop_counts, &key, &zero, BPF_NOEXIST) == -7 /* -E2BIG */) {
			stat_inc(STAT_DROP_MAP_FULL);
			return;
		}
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

SEC("tp_btf/kfree_skb")
int BPF_PROG(kfree_skb__tp_btf, struct sk_buff *skb)
{
	count_drop(skb, kfree_skb_reason_arg(ctx));
	return 0;
}

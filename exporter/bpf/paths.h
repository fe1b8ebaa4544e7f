/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Following sampled packets hop by hop.
 *
 * The decision is taken at the first hop that sees a packet (receive, or
 * queueing for transmit when it was made on this host): the 1-in-N sample
 * first, as a hash of the packet's identity (packet.h: sample_hash), then
 * the filter, then the per-CPU budget.  A chosen
 * packet enters `tracked` under its skb pointer; every later hop is one hash
 * lookup.  Terminal hops remove it.
 *
 * Drop capture: a drop of a packet nobody was following can still be kept as
 * a one-hop path (header, device, reason), 1 in drop_one_in, so drops are
 * seen far more often than the 1-in-N sample would show them.  It costs
 * nothing for packets that are not dropped.
 */
#ifndef PKTPATH_PATHS_H
#define PKTPATH_PATHS_H

#include "maps.h"
#include "packet.h"

#define NSEC_PER_SEC 1000000000ULL
/* A fib lookup is attributed to the packet this CPU last received only if it
 * happens within this time: softirq processing of one packet is far shorter. */
#define FIB_CORRELATION_NS 1000000ULL

static __always_inline struct path_config *paths_config(void)
{
	__u32 zero = 0;
	struct path_config *cfg = bpf_map_lookup_elem(&path_config, &zero);

	return cfg && cfg->enabled ? cfg : 0;
}

static __always_inline struct cpu_state *this_cpu_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&cpu_state, &zero);
}

static __always_inline int lpm_match(void *trie, struct pkt_header *h, __u8 *addr)
{
	struct lpm_key key = { .prefixlen = 128 };

	if (h->family == 4) {
		/* IPv4 lives in the trie as ::ffff:a.b.c.d (RFC 4291 mapped). */
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], addr, 4);
	} else {
		__builtin_memcpy(key.addr, addr, 16);
	}
	return bpf_map_lookup_elem(trie, &key) != 0;
}

static __always_inline int port_in(struct path_config *cfg, __u16 port)
{
	for (int i = 0; i < MAX_PORT_RANGES; i++) {
		if (i >= cfg->n_port_ranges)
			break;
		if (port >= cfg->ports[i].lo && port <= cfg->ports[i].hi)
			return 1;
	}
	return 0;
}

static __always_inline int filter_match(struct path_config *cfg, struct pkt_header *h, char *ifname)
{
	__u32 flags = cfg->filter_flags;

	if ((flags & FILTER_PROTO) && !(cfg->protocols[(h->protocol >> 3) & 31] & (1 << (h->protocol & 7))))
		return 0;
	if ((flags & FILTER_PORT) && !port_in(cfg, h->sport) && !port_in(cfg, h->dport))
		return 0;
	if ((flags & FILTER_SRC) && !lpm_match(&filter_src, h, h->saddr))
		return 0;
	if ((flags & FILTER_DST) && !lpm_match(&filter_dst, h, h->daddr))
		return 0;
	if ((flags & FILTER_IFACE) && !bpf_map_lookup_elem(&filter_ifaces, ifname))
		return 0;
	return 1;
}

/* At most budget_per_cpu new paths per second on this CPU (0: unlimited). */
static __always_inline int budget_take(struct path_config *cfg, struct cpu_state *st, __u64 now)
{
	if (!cfg->budget_per_cpu)
		return 1;
	if (now - st->window_start >= NSEC_PER_SEC) {
		st->window_start = now;
		st->window_count = 0;
	}
	if (st->window_count >= cfg->budget_per_cpu)
		return 0;
	st->window_count++;
	return 1;
}

static __always_inline void read_ifname(struct net_device *dev, char *out)
{
	if (dev)
		KREAD_IFNAME(out, dev);
}

/* Reserve and fill the common part of a hop event; the caller adds the rest. */
static __always_inline struct hop_event *event_start(__u32 hop, __u64 path_id, struct sk_buff *skb,
						     struct net_device *dev)
{
	struct hop_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);

	if (!ev) {
		stat_inc(STAT_RING_FULL);
		return 0;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->path_id = path_id;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->hop = hop;
	ev->cpu = bpf_get_smp_processor_id();
	ev->len = skb ? KREAD(skb->len, skb, len) : 0;
	if (dev) {
		read_ifname(dev, ev->ifname);
		ev->ifindex = KREAD(dev->ifindex, dev, ifindex);
		ev->netns = KREAD(dev->nd_net.net->ns.inum, dev, nd_net.net, ns.inum);
	}
	return ev;
}

/* A new path: filter, budget, then track (unless terminal).  `h` is already read. */
static __always_inline void path_start(struct path_config *cfg, struct sk_buff *skb, struct pkt_header *h,
				       __u64 ident, __u32 hop, struct net_device *dev, __u8 by, __u32 reason,
				       __u64 location)
{
	char ifname[16] = {};
	struct cpu_state *st;
	struct hop_event *ev;
	__u64 key = (__u64)skb, now, path_id;

	read_ifname(dev, ifname);
	if (!filter_match(cfg, h, ifname))
		return;
	st = this_cpu_state();
	if (!st)
		return;
	now = bpf_ktime_get_ns();
	if (!budget_take(cfg, st, now)) {
		stat_inc(STAT_PATH_BUDGET);
		return;
	}
	path_id = ((__u64)bpf_get_smp_processor_id() << 48) | ++st->seq;
	if (hop != HOP_DROP) {
		struct track t = { .path_id = path_id, .ident = ident, .flags = by };

		if (bpf_map_update_elem(&tracked, &key, &t, BPF_ANY)) {
			stat_inc(STAT_TRACK_FULL);
			return;
		}
		stat_inc(STAT_TRACK_INSERT);
	}
	stat_inc(by & EV_BY_DROP ? STAT_SAMPLED_DROP : STAT_SAMPLED_RATE);
	ev = event_start(hop, path_id, skb, dev);
	if (!ev)
		return;
	ev->flags = EV_HEADER | by;
	ev->reason = reason;
	ev->location = location;
	__builtin_memcpy(&ev->hdr, h, sizeof(*h));
	bpf_ringbuf_submit(ev, 0);
}

/* The fib tracepoint has no skb: remember which tracked packet this CPU is on. */
static __always_inline void fib_context_set(struct sk_buff *skb, __u64 path_id)
{
	struct cpu_state *st = this_cpu_state();
	unsigned char *nh;

	if (!st)
		return;
	st->cur_skb = (__u64)skb;
	st->cur_path = path_id;
	st->cur_ts = bpf_ktime_get_ns();
	st->cur_saddr = st->cur_daddr = 0;
	nh = network_header(skb);
	if (path_id && nh && bpf_ntohs(KREAD(skb->protocol, skb, protocol)) == ETH_P_IP) {
		struct iphdr ip = {};

		load_iphdr(nh, &ip);
		st->cur_saddr = ip.saddr;
		st->cur_daddr = ip.daddr;
	}
}

/* The packet this CPU was on is leaving (queued for transmit) or gone: later
 * lookups on this CPU are not its. */
static __always_inline void fib_context_end(struct sk_buff *skb)
{
	struct cpu_state *st = this_cpu_state();

	if (st && st->cur_skb == (__u64)skb)
		st->cur_path = 0;
}

/*
 * Receive and queue hops: where paths start.  A tracked pointer whose packet
 * identity changed was freed silently and reused: start over.
 */
static __always_inline void path_entry_hop(struct sk_buff *skb, __u32 hop, struct net_device *dev)
{
	struct path_config *cfg = paths_config();
	struct pkt_header h = {};
	__u64 key = (__u64)skb, ident;
	struct track *t;
	struct hop_event *ev;
	int is_ip;

	if (!cfg)
		return;
	t = bpf_map_lookup_elem(&tracked, &key);
	if (!t && !cfg->one_in) {
		if (hop == HOP_NETIF_RECEIVE)
			fib_context_set(skb, 0);
		return;
	}
	is_ip = read_header(skb, &h) == 0;
	ident = packet_ident(&h);
	if (t && (!is_ip || ident != t->ident)) {
		bpf_map_delete_elem(&tracked, &key);
		stat_inc(STAT_TRACK_STALE);
		t = 0;
	}
	if (hop == HOP_NETIF_RECEIVE)
		fib_context_set(skb, t ? t->path_id : 0);
	else
		fib_context_end(skb);
	if (t) {
		ev = event_start(hop, t->path_id, skb, dev);
		if (ev)
			bpf_ringbuf_submit(ev, 0);
		return;
	}
	if (is_ip && cfg->one_in && sample_hash(&h) % cfg->one_in == 0)
		path_start(cfg, skb, &h, ident, hop, dev, 0, 0, 0);
}

/*
 * An event for a tracked packet's hop, reserved and filled with the common
 * fields; NULL when paths are off, the packet is not followed, or the ring is
 * full.  The caller adds what its hop knows and submits.  `skb` is the
 * tracking key; its fields are read only when `readable`.
 */
static __always_inline struct hop_event *path_event(void *skb, int readable, __u32 hop, struct net_device *dev)
{
	__u64 key = (__u64)skb;
	struct track *t;

	if (!paths_config())
		return 0;
	t = bpf_map_lookup_elem(&tracked, &key);
	if (!t)
		return 0;
	return event_start(hop, t->path_id, readable ? (struct sk_buff *)skb : 0, dev);
}

/* Hops that only continue a path; `untrack` for the ones that end it. */
static __always_inline void path_hop(struct sk_buff *skb, int readable, __u32 hop, struct net_device *dev,
				     __s32 verdict, __u32 reason, __u64 location, int untrack)
{
	__u64 key = (__u64)skb;
	struct hop_event *ev;
	struct track *t;

	if (!paths_config())
		return;
	t = bpf_map_lookup_elem(&tracked, &key); /* one lookup for the many packets not followed */
	if (!t)
		return;
	ev = event_start(hop, t->path_id, readable ? skb : 0, dev);
	if (ev) {
		ev->verdict = verdict;
		ev->reason = reason;
		ev->location = location;
		bpf_ringbuf_submit(ev, 0);
	}
	if (untrack) {
		bpf_map_delete_elem(&tracked, &key);
		stat_inc(STAT_TRACK_DELETE);
		fib_context_end(skb);
	}
}

static __always_inline void path_drop(struct sk_buff *skb, __u32 reason, __u64 location)
{
	struct path_config *cfg = paths_config();
	__u64 key = (__u64)skb;

	if (!cfg)
		return;
	if (bpf_map_lookup_elem(&tracked, &key)) {
		path_hop(skb, 1, HOP_DROP, skb->dev, 0, reason, location, 1);
		return;
	}
	/* A drop is seen once, so a random draw is fine here. */
	if (cfg->drop_one_in && bpf_get_prandom_u32() % cfg->drop_one_in == 0) {
		struct pkt_header h = {};

		if (read_header(skb, &h) == 0)
			path_start(cfg, skb, &h, 0, HOP_DROP, skb->dev, EV_BY_DROP, reason, location);
	}
}

static __always_inline void path_fib_lookup(__u32 table, struct flowi4 *flp, struct fib_nh_common *nhc, int err)
{
	struct cpu_state *st;
	struct hop_event *ev;
	__u32 daddr;

	if (!paths_config())
		return;
	st = this_cpu_state();
	if (!st || !st->cur_path || bpf_ktime_get_ns() - st->cur_ts > FIB_CORRELATION_NS)
		return;
	/* Route lookup (towards the destination) or rp_filter's reverse lookup
	 * (towards the source); anything else is another packet's.  Input-path
	 * lookups always carry a source; a zero one is a local output lookup. */
	daddr = flp->daddr;
	if ((daddr != st->cur_daddr && daddr != st->cur_saddr) || !flp->saddr)
		return;
	ev = event_start(HOP_FIB_LOOKUP, st->cur_path, 0, 0);
	if (!ev)
		return;
	ev->table = table;
	ev->verdict = err;
	ev->fib_saddr = flp->saddr;
	ev->fib_daddr = daddr;
	if (!err && nhc)
		read_ifname(nhc->nhc_dev, ev->out_ifname);
	bpf_ringbuf_submit(ev, 0);
}

#endif /* PKTPATH_PATHS_H */

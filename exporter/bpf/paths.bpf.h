/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Following sampled packets hop by hop.
 *
 * The decision is taken at the first hop that sees a packet (receive, or
 * queueing for transmit when it was made on this host): the 1-in-N sample
 * first, as a hash of the packet's identity (packet.bpf.h: sample_hash), then
 * the filter, then the budget.  A chosen packet enters `tracked` under its
 * skb pointer; every later hop is one hash lookup, and none at all while
 * nothing is tracked (tracking_anything), which at 1 in 1000 is most of the
 * time.  Terminal hops remove it.
 *
 * Drop capture: a drop of a packet nobody was following can still be kept as
 * a one-hop path (header, device, reason), 1 in drop_one_in, so drops are
 * seen far more often than the 1-in-N sample would show them.  It costs
 * nothing for packets that are not dropped.
 */
#ifndef PKTPATH_PATHS_H
#define PKTPATH_PATHS_H

#include "maps.bpf.h"
#include "packet.bpf.h"

#define NSEC_PER_SEC 1000000000ULL
/* A fib lookup (or sk_data_ready) is attributed to the packet this CPU last
 * received only within this time.  The context is replaced by the next packet
 * the CPU receives and ended when the packet leaves or a reply is built, so
 * this only retires a context nothing replaced: softirq processing of one
 * packet takes microseconds, but under emulation (TCG) and with function hooks
 * on the way the same steps take milliseconds. */
#define FIB_CORRELATION_NS (50 * 1000000ULL)
/* Input route lookups name the receiving device; output lookups (and
 * rp_filter's reverse lookup) name the loopback device, index 1 in every
 * namespace (include/net/flow.h: LOOPBACK_IFINDEX). */
#define LOOPBACK_IFINDEX 1
/* NAT rewrites a followed packet's addresses or ports between two of its hops
 * in one namespace (DNAT in PREROUTING, SNAT in POSTROUTING), moments apart:
 * a changed flow is accepted as the same packet within this time only (as
 * generous as FIB_CORRELATION_NS, for the same emulated kernels). */
#define NAT_WINDOW_NS (50 * 1000000ULL)

/* The path_config of the generation in force (pktpath.h): the generation is
 * read once, here, and everything after uses cfg->generation.  Two array
 * lookups, both inlined by the verifier. */
static __always_inline struct path_config *paths_config(void)
{
	__u32 zero = 0, generation;
	__u32 *active = bpf_map_lookup_elem(&path_generation, &zero);
	struct path_config *cfg;

	if (!active)
		return 0;
	generation = *(volatile __u32 *)active;
	cfg = bpf_map_lookup_elem(&path_config, &generation);
	return cfg && cfg->enabled ? cfg : 0;
}

/* The armed window's threshold (pktpath.h: struct path_window), else 0: one
 * inlined array lookup.  Whether the window is open now is a second question,
 * window_open_now(), asked only of a packet that hashes below this threshold:
 * in a flood the clock read then costs 1 packet in N, not every packet while
 * the hooks are attached (that took 21 ns off each entry hook's run in a drop
 * flood here, docs/benchmarks.md). */
static __always_inline __u64 window_armed_below(void)
{
	__u32 zero = 0;
	struct path_window *w = bpf_map_lookup_elem(&path_window, &zero);

	return w ? *(volatile __u64 *)&w->sample_below : 0;
}

/* Is the armed window open now?  The kernel's clock decides, so a window
 * opens and closes on time to the nanosecond on every CPU. */
static __always_inline int window_open_now(void)
{
	__u32 zero = 0;
	struct path_window *w = bpf_map_lookup_elem(&path_window, &zero);
	__u64 now;

	if (!w)
		return 0;
	now = bpf_ktime_get_ns();
	return now >= w->open_ns && now < w->close_ns;
}

/*
 * Is any packet being followed?  Inserts and the kernel's deletes move
 * GATE_LIVE atomically; userspace's reaper adds what it deletes to
 * GATE_REAPED.  Their difference is the number of entries in `tracked`, so
 * while it is zero a hop knows without a hash lookup that its packet is not
 * followed.  Two array reads (inlined by the verifier) replace a jhash and a
 * bucket walk on every packet.
 */
static __always_inline int tracking_anything(void)
{
	__u32 live_slot = GATE_LIVE, reaped_slot = GATE_REAPED;
	__s64 *live = bpf_map_lookup_elem(&path_gate, &live_slot);
	__s64 *reaped = bpf_map_lookup_elem(&path_gate, &reaped_slot);

	return !live || !reaped || *live - *reaped > 0;
}

static __always_inline struct track *track_lookup(__u64 key)
{
	if (!tracking_anything())
		return 0;
	return bpf_map_lookup_elem(&tracked, &key);
}

static __always_inline void gate_add(__s64 n)
{
	__u32 live_slot = GATE_LIVE;
	__s64 *live = bpf_map_lookup_elem(&path_gate, &live_slot);

	if (live)
		__sync_fetch_and_add(live, n);
}

/* 0, or -1 when the map is full.  An entry already there (a pointer freed
 * silently, met again before a hop looked) is replaced in place: the gate's
 * count does not change; the stats see one packet leave and one enter. */
static __always_inline int track_insert(__u64 key, struct track *t)
{
	struct track *old;

	if (bpf_map_update_elem(&tracked, &key, t, BPF_NOEXIST) == 0) {
		gate_add(1);
		stat_inc(STAT_TRACK_INSERT);
		return 0;
	}
	old = bpf_map_lookup_elem(&tracked, &key);
	if (!old)
		return -1;
	__builtin_memcpy(old, t, sizeof(*t));
	stat_inc(STAT_TRACK_STALE);
	stat_inc(STAT_TRACK_INSERT);
	return 0;
}

/* Only the delete that succeeds moves the gate: a hop and the reaper may race. */
static __always_inline int track_delete(__u64 key)
{
	if (bpf_map_delete_elem(&tracked, &key))
		return -1;
	gate_add(-1);
	return 0;
}

static __always_inline struct cpu_state *this_cpu_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&cpu_state, &zero);
}

/* This CPU's state, when packet paths are on (else 0: nothing to remember). */
static __always_inline struct cpu_state *following_cpu_state(void)
{
	return paths_config() ? this_cpu_state() : 0;
}

static __always_inline int lpm_match(void *trie, __u32 generation, struct pkt_header *h, __u8 *addr)
{
	struct lpm_key key = { .prefixlen = 8 + 128, .generation = generation };

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

static __always_inline void read_ifname(struct net_device *dev, char *out)
{
	if (dev)
		KREAD_IFNAME(out, dev);
}

static __always_inline int filter_match(struct path_config *cfg, struct pkt_header *h, struct net_device *dev)
{
	__u32 flags = cfg->filter_flags;

	if ((flags & FILTER_PROTO) && !(cfg->protocols[(h->protocol >> 3) & 31] & (1 << (h->protocol & 7))))
		return 0;
	if ((flags & FILTER_PORT) && !port_in(cfg, h->sport) && !port_in(cfg, h->dport))
		return 0;
	if ((flags & FILTER_SRC) && !lpm_match(&filter_src, cfg->generation, h, h->saddr))
		return 0;
	if ((flags & FILTER_DST) && !lpm_match(&filter_dst, cfg->generation, h, h->daddr))
		return 0;
	if (flags & FILTER_IFACE) {
		struct iface_key key = { .generation = cfg->generation };

		read_ifname(dev, key.name); /* only here: the event reads its own */
		if (!bpf_map_lookup_elem(&filter_ifaces, &key))
			return 0;
	}
	return 1;
}

/*
 * The budget step it is now: 2^27 ns (a time bucket, 2^30 ns, is 8 steps).
 * The drop program asks for it on every drop of a storm (drop_capture_idle),
 * where bpf_ktime_get_ns() (a clocksource read) cost 45 ns a drop on the KVM
 * machines we measured, against 2.9 us a packet in a drop flood; tracing
 * programs may not use the coarse clock.  So each CPU reads the clock once a
 * tick (jiffies, a memory read) and keeps the step it found: a step begins up
 * to one tick late on a CPU.  time_budget_take() tops a budget up only for a
 * step later than its mark, so a CPU a tick behind takes from the credit as
 * it finds it instead of topping it up again.
 */
static __always_inline __u64 budget_step(void)
{
	struct cpu_state *st = this_cpu_state();
	__u64 tick = bpf_jiffies64();

	if (!st)
		return bpf_ktime_get_ns() >> (BUDGET_WINDOW_SHIFT - BUDGET_PACE_SHIFT);
	if (st->bucket_jiffies != tick) {
		st->bucket_jiffies = tick;
		st->bucket = bpf_ktime_get_ns() >> (BUDGET_WINDOW_SHIFT - BUDGET_PACE_SHIFT);
	}
	return st->bucket;
}

/*
 * A sampling window's budget: at most `limit` new paths in the window on the
 * whole host (0: unlimited).
 * Only packets the sample or drop capture chose get here, so the shared
 * counter is touched rarely.  It is approximate by design: two CPUs starting
 * a window, or passing the test together, can let a few more through (at
 * most one per CPU), which keeps it to plain atomic adds every supported
 * kernel has (no compare-and-swap before 5.12), and it never lets fewer
 * through.  The window functions below (window_budget_take/spent) are its
 * only callers; per-second budgets are time_budget_take/spent.
 *
 * budget_spent(): whether budget_take() would refuse now, without taking.
 */
static __always_inline int budget_spent(__u32 slot, __u32 limit, __u64 window)
{
	struct budget_state *b;

	if (!limit)
		return 0;
	b = bpf_map_lookup_elem(&path_budget, &slot);
	return !b || (b->mark >= window && b->count >= limit);
}

/* `window`: WINDOW_BUDGET_BUCKET | the sampling window's number. */
static __always_inline int budget_take(__u32 slot, __u32 limit, __u64 window)
{
	struct budget_state *b;

	if (!limit)
		return 1;
	b = bpf_map_lookup_elem(&path_budget, &slot);
	if (!b)
		return 0;
	if (window > b->mark) { /* a later window: a fresh count */
		b->mark = window;
		b->count = 0;
	}
	if (b->count >= limit)
		return 0;
	__sync_fetch_and_add(&b->count, 1);
	return 1;
}

/*
 * A per-second budget is a token bucket: `limit` paths per time bucket
 * (2^30 ns), topped up by an eighth of that every budget step (2^27 ns), and
 * holding at most `limit`.  So a quiet host meets a burst with a second's
 * quota at once (a short burst of drops under the budget gets every path),
 * and a flood that spent it gets paths at the budget's rate, a step's share
 * at a time, spread over each second: not all from its first milliseconds,
 * which would skew what the samples say about the flood, and not a second's
 * worth of paths reaching the agent at once, every second (its memory).
 * Credit is in eighths of a path, so a step's share is exact.
 *
 * The credit `b` has at `step` (budget_step(): never earlier than a step the
 * budget was topped up in, give or take a tick on another CPU).
 */
static __always_inline __s64 rate_credit(const struct budget_state *b, __u32 limit, __u64 step)
{
	__s64 full = (__s64)limit << BUDGET_PACE_SHIFT, credit = b->count;
	__u64 elapsed = step - b->mark;

	if (step <= b->mark)
		return credit;
	if (elapsed >= 1 << BUDGET_PACE_SHIFT) /* a time bucket or more: full (and no overflow) */
		return full;
	credit += (__s64)elapsed * limit;
	return credit < full ? credit : full;
}

/*
 * Take a path from a per-second budget (`limit` per 2^30 ns, 0: unlimited).
 * Approximate like budget_take(), with plain stores and atomic adds: CPUs
 * taking the last credit together overdraw it by a path each (paid back by
 * the next top-up), and a CPU that read the old step just as another topped
 * the budget up can top it up again (or set its mark back a step), by a
 * step's share at most, never past the full bucket.  The window for that is
 * the few instructions between reading the mark and writing it.
 */
static __always_inline int time_budget_take(__u32 slot, __u32 limit)
{
	struct budget_state *b;
	__u64 step;

	if (!limit)
		return 1;
	b = bpf_map_lookup_elem(&path_budget, &slot);
	if (!b)
		return 0;
	step = budget_step();
	if (step > b->mark) {
		__s64 credit = rate_credit(b, limit, step);

		b->mark = step;
		b->count = credit;
	}
	if (b->count < 1 << BUDGET_PACE_SHIFT)
		return 0;
	__sync_fetch_and_add(&b->count, -(1 << BUDGET_PACE_SHIFT));
	return 1;
}

/* Whether time_budget_take() would refuse now, without taking: read-only, so
 * CPUs refusing a storm's drops together share the budget's cache line. */
static __always_inline int time_budget_spent(__u32 slot, __u32 limit)
{
	struct budget_state *b;

	if (!limit)
		return 0;
	b = bpf_map_lookup_elem(&path_budget, &slot);
	return !b || rate_credit(b, limit, budget_step()) < 1 << BUDGET_PACE_SHIFT;
}

/* A rate-sampled path's budget while windows are on: the window's own quota
 * (pktpath.h: struct path_window.max_paths). */
static __always_inline int window_budget_take(void)
{
	__u32 zero = 0;
	struct path_window *w = bpf_map_lookup_elem(&path_window, &zero);

	return w && budget_take(BUDGET_RATE, w->max_paths, WINDOW_BUDGET_BUCKET | w->number);
}

/* Whether window_budget_take() would refuse now, without taking: read-only, so
 * CPUs refusing together share the counter's cache line instead of bouncing it. */
static __always_inline int window_budget_spent(void)
{
	__u32 zero = 0;
	struct path_window *w = bpf_map_lookup_elem(&path_window, &zero);

	return !w || budget_spent(BUDGET_RATE, w->max_paths, WINDOW_BUDGET_BUCKET | w->number);
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

static __always_inline __u32 dev_netns(struct net_device *dev)
{
	return dev ? KREAD(dev->nd_net.net->ns.inum, dev, nd_net.net, ns.inum) : 0;
}

/*
 * Is the packet whose identity `h` was just read still the one `t` follows?
 * A tracked skb pointer is reused as soon as its packet is freed, and some
 * frees have no tracepoint (a TCP reset consumed by its socket, a pure ACK), so
 * the pointer alone proves nothing.  The packet must keep what no hop rewrites
 * (packet_ident), and its flow (flow_ident), unless the flow changed where NAT
 * changes it: in the namespace where the packet was last seen, within
 * NAT_WINDOW_NS.  On success the entry learns where and when it was seen.
 */
static __always_inline int track_verify(struct track *t, struct pkt_header *h, __u32 netns, __u64 now)
{
	__u64 flow;

	if (packet_ident(h) != t->ident)
		return 0;
	flow = flow_ident(h);
	if (flow != t->flow) {
		if (!netns || netns != t->netns || now - t->seen_ns > NAT_WINDOW_NS)
			return 0;
		t->flow = flow; /* rewritten by NAT: the same packet under a new flow */
	}
	if (netns)
		t->netns = netns;
	t->seen_ns = now;
	return 1;
}

/* The skb's packet, read now, is the one `t` follows; if not, `t` is stale and goes. */
static __always_inline int track_still(struct track *t, __u64 key, struct sk_buff *skb, __u32 netns)
{
	struct pkt_header h = {};

	if (read_identity(skb, &h) == PKT_IP && track_verify(t, &h, netns, bpf_ktime_get_ns()))
		return 1;
	if (track_delete(key) == 0)
		stat_inc(STAT_TRACK_STALE);
	return 0;
}

/* One end of the packet is one of the agent's own endpoints, in its namespace. */
static __always_inline int own_endpoint(struct pkt_header *h, __u32 netns, __u8 *addr, __u16 port)
{
	struct own_endpoint k = { .netns = netns, .family = h->family, .protocol = h->protocol, .port = port };

	__builtin_memcpy(k.addr, addr, 16);
	if (bpf_map_lookup_elem(&own_endpoints, &k))
		return 1;
	__builtin_memset(k.addr, 0, 16); /* a listener on every address */
	return bpf_map_lookup_elem(&own_endpoints, &k) != 0;
}

/* The agent never follows its own traffic (pktpath.h: struct own_endpoint).
 * Only packets already chosen get here, so these lookups are rare. */
static __always_inline int own_traffic(struct pkt_header *h, __u32 netns)
{
	if (!netns || !h->sport)
		return 0;
	return own_endpoint(h, netns, h->saddr, h->sport) || own_endpoint(h, netns, h->daddr, h->dport);
}

/*
 * A new path: filter, budget, then track (unless terminal).  `h` is already
 * read, `ident`/`flow` are its identity.  With `full_later`, `h` holds only
 * the identity (read_identity) and the whole snapshot is read once the budget
 * has let the path start.  Returns the new path's id, 0 if none was started.
 *
 * A window whose quota is spent refuses every further candidate until it
 * closes; at the window's first N (one_in, before any traffic estimate) that
 * is most packets of a flood.  So a refusal is made as cheap as it can be:
 * the filter, then the quota, read-only; the own-traffic lookups and the
 * second header read only for a packet that may still start a path.
 */
static __always_inline __u64 path_start(struct path_config *cfg, struct sk_buff *skb, struct pkt_header *h,
				       __u64 ident, __u64 flow, __u32 netns, __u32 hop, struct net_device *dev,
				       __u8 by, __u32 reason, __u64 location, const int full_later)
{
	struct cpu_state *st;
	struct hop_event *ev;
	__u64 key = (__u64)skb, now, path_id;

	if (!filter_match(cfg, h, dev))
		return 0;
	if (!(by & EV_BY_DROP) && cfg->windowed && window_budget_spent()) {
		stat_inc(STAT_PATH_BUDGET);
		return 0;
	}
	if (own_traffic(h, netns))
		return 0;
	st = this_cpu_state();
	if (!st)
		return 0;
	now = bpf_ktime_get_ns();
	if (by & EV_BY_DROP ? !time_budget_take(BUDGET_DROP, cfg->max_drop_paths)
	    : cfg->windowed ? !window_budget_take()
			    : !time_budget_take(BUDGET_RATE, cfg->max_paths)) {
		stat_inc(by & EV_BY_DROP ? STAT_DROP_BUDGET : STAT_PATH_BUDGET);
		return 0;
	}
	path_id = ((__u64)bpf_get_smp_processor_id() << 48) | ++st->seq;
	if (hop != HOP_DROP) {
		struct track t = { .path_id = path_id, .ident = ident, .flow = flow, .born_ns = now,
				   .seen_ns = now, .netns = netns, .flags = by };

		if (track_insert(key, &t)) {
			stat_inc(STAT_TRACK_FULL);
			return 0;
		}
	}
	stat_inc(by & EV_BY_DROP ? STAT_SAMPLED_DROP : STAT_SAMPLED_RATE);
	if (full_later)
		read_header(skb, h); /* the same packet, whole: its first event's snapshot */
	ev = event_start(hop, path_id, skb, dev);
	if (!ev)
		return path_id;
	ev->flags = EV_HEADER | by;
	ev->reason = reason;
	ev->location = location;
	__builtin_memcpy(&ev->hdr, h, sizeof(*h));
	bpf_ringbuf_submit(ev, 0);
	return path_id;
}

/* The fib tracepoints have no skb: remember which followed packet this CPU is
 * on, and its flow and device, to tell its lookups from others'
 * (fib_lookup_kind).  For the many packets not followed, one store. */
static __always_inline void fib_context_set(struct sk_buff *skb, struct net_device *dev, __u64 path_id,
					    struct pkt_header *h)
{
	struct cpu_state *st = this_cpu_state();

	if (!st)
		return;
	st->cur_path = path_id;
	if (!path_id)
		return;
	st->cur_skb = (__u64)skb;
	st->cur_ts = bpf_ktime_get_ns();
	st->cur_family = h->family;
	__builtin_memcpy(st->cur_saddr, h->saddr, 16);
	__builtin_memcpy(st->cur_daddr, h->daddr, 16);
	st->cur_ifindex = dev ? KREAD(dev->ifindex, dev, ifindex) : 0;
	st->cur_dport = h->dport;
	st->cur_proto = h->protocol;
	st->cur_replied = 0;
}

/* The packet this CPU was on is leaving (queued for transmit) or gone: later
 * lookups on this CPU are not its. */
static __always_inline void fib_context_end(struct sk_buff *skb)
{
	struct cpu_state *st = this_cpu_state();

	if (st && st->cur_path && st->cur_skb == (__u64)skb)
		st->cur_path = 0;
}

/*
 * Receive and queue hops: where paths start, and where a followed packet is
 * checked to be still the same packet (track_verify).  `netns` is the hop's
 * namespace (the device's, or the function's net argument).
 */
static __always_inline void path_entry_hop(struct sk_buff *skb, __u32 hop, struct net_device *dev, __u32 netns)
{
	struct path_config *cfg = paths_config();
	struct pkt_header h = {};
	__u64 key = (__u64)skb, path_id = 0;
	struct track *t;
	struct hop_event *ev;
	int hdr = PKT_NOT_IP, read = 0;
	__u64 below;

	if (!cfg)
		return;
	t = track_lookup(key);
	if (t) {
		hdr = read_identity(skb, &h);
		read = 1;
		if (hdr != PKT_IP || !track_verify(t, &h, netns, bpf_ktime_get_ns())) {
			if (track_delete(key) == 0)
				stat_inc(STAT_TRACK_STALE);
			t = 0;
		} else {
			path_id = t->path_id;
		}
	}
	below = cfg->windowed ? window_armed_below() : cfg->sample_below;
	if (!t && below) {
		/* Not followed: the 1-in-N sample decides, on the header read once, then (windows)
		 * the clock, for the few packets the hash chose. */
		if (!read)
			hdr = read_identity(skb, &h);
		if (hdr == PKT_IP && (sample_hash(&h) >> 32) < below && (!cfg->windowed || window_open_now())) {
			__u64 ident = packet_ident(&h), flow = flow_ident(&h);

			path_id = path_start(cfg, skb, &h, ident, flow, netns, hop, dev, 0, 0, 0, 1);
		}
	}
	/* Received (the device, then IP's own receive with function hooks): its route lookups come
	 * next, on this CPU.  Queued or sent out: whatever is looked up next is not its. */
	if (hop == HOP_NETIF_RECEIVE || hop == HOP_IP_RCV)
		fib_context_set(skb, dev, path_id, &h);
	else
		fib_context_end(skb);
	if (t) {
		ev = event_start(hop, t->path_id, skb, dev);
		if (ev)
			bpf_ringbuf_submit(ev, 0);
	}
}

/*
 * The entry of a followed packet at a hop that only continues paths, or 0.
 * Where the skb can be read (`readable`), its packet must still be the one
 * followed (track_still); where it cannot (net_dev_xmit, whose driver may
 * have freed it already), the hop comes right after one that checked.
 */
static __always_inline struct track *path_follow(struct sk_buff *skb, int readable, struct net_device *dev)
{
	__u64 key = (__u64)skb;
	struct track *t;

	if (!paths_config())
		return 0;
	t = track_lookup(key); /* nothing at all for the many packets not followed */
	if (!t || (readable && !track_still(t, key, skb, dev_netns(dev))))
		return 0;
	return t;
}

/*
 * An event for a tracked packet's hop, reserved and filled with the common
 * fields; NULL when paths are off, the packet is not followed, or the ring is
 * full.  The caller adds what its hop knows and submits.  `skb` is the
 * tracking key; its fields are read only when `readable`.
 */
static __always_inline struct hop_event *path_event(void *skb, int readable, __u32 hop, struct net_device *dev)
{
	struct track *t = path_follow(skb, readable, dev);

	return t ? event_start(hop, t->path_id, readable ? (struct sk_buff *)skb : 0, dev) : 0;
}

/* Hops that only continue a path; `untrack` for the ones that end it.  Returns
 * whether the packet was followed. */
static __always_inline int path_hop(struct sk_buff *skb, int readable, __u32 hop, struct net_device *dev,
				    __s32 verdict, __u32 reason, __u64 location, int untrack)
{
	__u64 key = (__u64)skb;
	struct hop_event *ev;
	struct track *t = path_follow(skb, readable, dev);

	if (!t)
		return 0;
	ev = event_start(hop, t->path_id, readable ? skb : 0, dev);
	if (ev) {
		ev->verdict = verdict;
		ev->reason = reason;
		ev->location = location;
		bpf_ringbuf_submit(ev, 0);
	}
	if (untrack && track_delete(key) == 0) {
		stat_inc(STAT_TRACK_DELETE);
		fib_context_end(skb);
	}
	return 1;
}

static __always_inline void path_drop(struct sk_buff *skb, __u32 reason, __u64 location)
{
	struct path_config *cfg = paths_config();

	if (!cfg)
		return;
	if (path_hop(skb, 1, HOP_DROP, skb->dev, 0, reason, location, 1))
		return;
	/* A drop is seen once, so a random draw is fine here; at 1 in 1 (the
	 * default) no draw is needed.  In a drop storm the budget runs out
	 * first: check it before reading the header. */
	if (cfg->drop_sample_below < 1ULL << 32 && bpf_get_prandom_u32() >= cfg->drop_sample_below)
		return;
	if (time_budget_spent(BUDGET_DROP, cfg->max_drop_paths)) {
		stat_inc(STAT_DROP_BUDGET);
		return;
	}
	{
		struct pkt_header h = {};
		/* A truncated packet is kept too: its path says what it lacks. */
		int hdr = read_header(skb, &h);

		if (hdr != PKT_NOT_IP)
			path_start(cfg, skb, &h, 0, 0, dev_netns(skb->dev), HOP_DROP, skb->dev, EV_BY_DROP, reason,
				   location, 0);
	}
}

/*
 * Whether drop capture (path_drop, in the drop_capture continuation) would do
 * nothing for this drop, decided in the counting program so that a drop storm
 * does not pay the tail call and path_drop's lookups on every drop: paths are
 * off; or no packet is followed (so this one is not) and drop capture is off,
 * or it keeps every drop (1 in 1, the default) and this second's budget is
 * spent, counted as drop capture counts it.  With 1 in N the draw stays in
 * path_drop, where it is made once.
 */
static __always_inline int drop_capture_idle(void)
{
	struct path_config *cfg = paths_config();

	if (!cfg)
		return 1;
	if (tracking_anything())
		return 0;
	if (!cfg->drop_sample_below)
		return 1;
	if (cfg->drop_sample_below < 1ULL << 32)
		return 0;
	if (time_budget_spent(BUDGET_DROP, cfg->max_drop_paths)) {
		stat_inc(STAT_DROP_BUDGET);
		return 1;
	}
	return 0;
}

/*
 * sk_data_ready: a socket was given data.  It has no skb either: the packet
 * is the one this CPU received last, if that one is followed, recent, and its
 * protocol and destination port are the socket's.  Queued to its socket, the
 * packet has arrived: the path ends here (what follows, the reader's copy and
 * the free, has no tracepoint for a linear UDP datagram anyway).
 */
static __always_inline void path_sock_queue(struct sock *sk)
{
	struct cpu_state *st = this_cpu_state();
	struct hop_event *ev;
	struct track *t;
	__u64 key;

	if (!st || !st->cur_path || !paths_config())
		return; /* the common case: this CPU's last packet is not followed */
	if (bpf_ktime_get_ns() - st->cur_ts > FIB_CORRELATION_NS || sk->__sk_common.skc_num != st->cur_dport ||
	    sk->sk_protocol != st->cur_proto)
		return;
	key = st->cur_skb;
	t = track_lookup(key);
	if (!t || t->path_id != st->cur_path)
		return;
	ev = event_start(HOP_SOCK_QUEUE, t->path_id, 0, 0);
	if (ev) {
		ev->verdict = st->cur_dport;
		bpf_ringbuf_submit(ev, 0);
	}
	if (track_delete(key) == 0)
		stat_inc(STAT_TRACK_DELETE);
	st->cur_path = 0;
}

static __always_inline int addr_eq(const __u8 *a, const __u8 *b)
{
	__u64 a0, a1, b0, b1;

	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	return a0 == b0 && a1 == b1;
}

/*
 * Whose route lookup is this?  The fib tracepoints have no skb: they fire for
 * the packet this CPU received last (fib_context_set), for rp_filter's reverse
 * lookup of it, and for every reply the kernel builds on the way: an ICMP
 * error (icmp_route_lookup, with its xfrm relookups, one of them an input
 * lookup of the reversed flow), a TCP reset (ip_send_unicast_reply).  A
 * reply's first lookup is an output lookup (flowi_iif = LOOPBACK_IFINDEX,
 * ip_route_output_key_hash_rcu) that carries the reply's protocol; the packet's
 * own lookups all come before it (routing precedes anything that answers).  So:
 *  - once a reply's lookup is seen, no further lookup is the packet's
 *    (cur_replied, until the next packet);
 *  - FIB_RP_FILTER, IPv4 only: rp_filter's reverse lookup
 *    (__fib_validate_source, net/ipv4/fib_frontend.c): protocol 0, from the
 *    packet's destination back to its source; its iif is the forward route's
 *    output device, or LOOPBACK_IFINDEX for a local destination.  Where fib
 *    rules match on ports or protocol (fib4_rules_early_flow_dissect) it
 *    carries the packet's protocol: it is left out then, rather than risk
 *    showing a reply's lookup as the packet's;
 *  - FIB_ROUTE: its input route lookup (ip_route_input_slow): iif a real
 *    device, from the packet's source, to its destination or on the device it
 *    arrived on (DNAT in PREROUTING may have rewritten the destination).
 * Returns FIB_ROUTE, FIB_RP_FILTER, or -1 for a lookup that is not the packet's.
 */
static __always_inline int fib_lookup_kind(struct cpu_state *st, __u8 family, int iif, __u8 proto,
					   const __u8 *saddr, const __u8 *daddr)
{
	if (!st->cur_path || st->cur_replied || st->cur_family != family ||
	    bpf_ktime_get_ns() - st->cur_ts > FIB_CORRELATION_NS)
		return -1;
	if (iif == LOOPBACK_IFINDEX && proto) {
		st->cur_replied = 1;
		return -1;
	}
	if (!proto && addr_eq(saddr, st->cur_daddr) && addr_eq(daddr, st->cur_saddr))
		return family == 4 ? FIB_RP_FILTER : -1;
	if (iif != LOOPBACK_IFINDEX && addr_eq(saddr, st->cur_saddr) &&
	    (addr_eq(daddr, st->cur_daddr) || (st->cur_ifindex && iif == st->cur_ifindex)))
		return FIB_ROUTE;
	return -1;
}

static __always_inline void fib_event(struct cpu_state *st, int kind, __u32 table, int err, struct net_device *oif,
				      const __u8 *saddr, const __u8 *daddr)
{
	struct hop_event *ev = event_start(HOP_FIB_LOOKUP, st->cur_path, 0, 0);

	if (!ev)
		return;
	ev->fib_family = st->cur_family;
	ev->table = table;
	ev->verdict = err;
	ev->phase = kind;
	__builtin_memcpy(ev->fib_saddr, saddr, 16);
	__builtin_memcpy(ev->fib_daddr, daddr, 16);
	if (!err)
		read_ifname(oif, ev->out_ifname);
	bpf_ringbuf_submit(ev, 0);
}

/* fib_table_lookup(tb_id, flp, nhc, err): one IPv4 table's answer.  err: 0
 * found, -EAGAIN no route in this table (or a throw route), else the route
 * type's error (net/ipv4/fib_semantics.c fib_props): -EINVAL blackhole,
 * -EHOSTUNREACH unreachable, -EACCES prohibit. */
static __always_inline void path_fib_lookup(__u32 table, struct flowi4 *flp, struct fib_nh_common *nhc, int err)
{
	__u8 saddr[16] = {}, daddr[16] = {};
	struct cpu_state *st;
	int kind;

	if (!paths_config())
		return;
	st = this_cpu_state();
	if (!st || !st->cur_path)
		return; /* the common case: this CPU's last packet is not followed */
	__builtin_memcpy(saddr, &flp->saddr, 4);
	__builtin_memcpy(daddr, &flp->daddr, 4);
	kind = fib_lookup_kind(st, 4, flp->__fl_common.flowic_iif, flp->__fl_common.flowic_proto, saddr, daddr);
	if (kind >= 0)
		fib_event(st, kind, table, err, nhc ? nhc->nhc_dev : 0, saddr, daddr);
}

/* RTN_* route types (uapi linux/rtnetlink.h, which needs libc headers). */
#define RTN_BLACKHOLE 6
#define RTN_UNREACHABLE 7
#define RTN_PROHIBIT 8
#define RTN_THROW 9
#define E_AGAIN 11
#define E_INVAL 22
#define E_ACCES 13
#define E_NETUNREACH 101
#define E_HOSTUNREACH 113

/*
 * fib6_table_lookup(net, res, table, flp): one IPv6 table's answer.  Its
 * error is derived the way the tracepoint's own `err` is (net/ipv6/route.c
 * ip6_rt_type_to_error), except that the null entry -- no route at all, which
 * the kernel types RTN_UNREACHABLE -- is told apart from an `unreachable`
 * route: -ENETUNREACH.
 */
static __always_inline void path_fib6_lookup(const struct net *net, const struct fib6_result *res,
					     struct fib6_table *table, const struct flowi6 *flp)
{
	__u8 saddr[16], daddr[16];
	struct cpu_state *st;
	int kind, err = 0;

	if (!paths_config())
		return;
	st = this_cpu_state();
	if (!st || !st->cur_path)
		return;
	__builtin_memcpy(saddr, &flp->saddr, 16);
	__builtin_memcpy(daddr, &flp->daddr, 16);
	kind = fib_lookup_kind(st, 6, flp->__fl_common.flowic_iif, flp->__fl_common.flowic_proto, saddr, daddr);
	if (kind < 0)
		return;
	if (res->f6i == net->ipv6.fib6_null_entry)
		err = -E_NETUNREACH;
	else if (res->fib6_type == RTN_BLACKHOLE)
		err = -E_INVAL;
	else if (res->fib6_type == RTN_UNREACHABLE)
		err = -E_HOSTUNREACH;
	else if (res->fib6_type == RTN_PROHIBIT)
		err = -E_ACCES;
	else if (res->fib6_type == RTN_THROW)
		err = -E_AGAIN;
	fib_event(st, kind, table->tb6_id, err, res->nh ? res->nh->nh_common.nhc_dev : 0, saddr, daddr);
}

#endif /* PKTPATH_PATHS_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Every map of pktpath.bpf.o, in one place; sizes marked "loader" are set
 * from config by exporter/agent.py before load. */
#ifndef PKTPATH_MAPS_H
#define PKTPATH_MAPS_H

#include <bpf/bpf_helpers.h>
#include "pktpath.h"

/* Drop counters: every drop, unsampled.  max_entries: loader (drops.max_series). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct drop_key);
	__type(value, struct drop_value);
} drop_counts SEC(".maps");

/* The drops' fast path (drops.bpf.h).  A plain array with one block of
 * DROP_SLOTS_PER_CPU entries per CPU rather than a per-CPU array: userspace
 * must be able to retire one CPU's slot without writing the other CPUs'
 * copies, and reads it through mmap, without a syscall.  max_entries:
 * loader (DROP_SLOTS_PER_CPU x possible CPUs). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, DROP_SLOTS_PER_CPU);
	__type(key, __u32);
	__type(value, struct drop_slot);
} drop_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT__MAX);
	__type(key, __u32); /* enum pktpath_stat (array keys must be plain u32 in BTF) */
	__type(value, __u64);
} stats SEC(".maps");

/* Packets being followed, by skb pointer.  A plain hash, not an LRU: every
 * entry that leaves it is accounted for (path_gate), which an LRU's silent
 * evictions would break.  A packet freed where no hop sees it (a pure TCP ACK)
 * is found at its pointer's next use, or reaped by userspace
 * (exporter/paths/tracking.py).  max_entries: loader (sampling.max_tracked). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct track);
} tracked SEC(".maps");

/* Host-wide path budgets (paths.bpf.h: budget_take, time_budget_take), one per enum budget_slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BUDGET__MAX);
	__type(key, __u32);
	__type(value, struct budget_state);
} path_budget SEC(".maps");

/* How many entries `tracked` holds, so that the hops of the many packets not
 * followed skip the hash lookup while it is empty (paths.bpf.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GATE__MAX);
	__type(key, __u32);
	__type(value, __s64);
} path_gate SEC(".maps");

/* Hop events to userspace.  max_entries (bytes): loader. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

/* The filter generation in force (pktpath.h, FILTER_GENERATIONS): an index
 * into path_config, and the generation of the filter maps' keys. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} path_generation SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FILTER_GENERATIONS);
	__type(key, __u32);
	__type(value, struct path_config);
} path_config SEC(".maps");

/* The sampling window (pktpath.h: struct path_window), read only while a
 * windowed config's entry hops are attached. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_window);
} path_window SEC(".maps");

/* Room for two full generations: the new one is written beside the old. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__uint(max_entries, FILTER_GENERATIONS * MAX_FILTER_CIDRS);
	__type(key, struct lpm_key);
	__type(value, __u8);
} filter_src SEC(".maps"), filter_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FILTER_GENERATIONS * MAX_FILTER_IFACES);
	__type(key, struct iface_key);
	__type(value, __u8);
} filter_ifaces SEC(".maps");

/* Verdict counters, per CPU, every packet (function hooks only: fentry/kprobe). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct nf_verdict_key);
	__type(value, __u64);
} nf_verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct rp_filter_key);
	__type(value, __u64);
} rp_filter_checks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 256);
	__type(key, struct route_key);
	__type(value, __u64);
} route_lookups SEC(".maps");

/* kprobe -> kretprobe: a kretprobe sees no arguments, so the kprobe pushes
 * them here.  A small per-CPU stack, because a hook can nest on one CPU (a
 * REJECT's reply passes the OUTPUT hook inside the INPUT hook's call).  Each
 * entry keeps the stack pointer of its call, so a return takes its own call's
 * arguments and no other's (hooks.bpf.h: stash_pop3). */
#define STASH_DEPTH 4
struct stash {
	__u32 depth;
	__u32 fn[STASH_DEPTH]; /* which function pushed each entry (enum stash_fn) */
	__u64 sp[STASH_DEPTH]; /* the call's stack pointer at entry */
	__u64 args[STASH_DEPTH][3];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stash);
} kstash SEC(".maps");

/* Per-CPU scratch: path id sequence and the packet this CPU is processing
 * (fib_table_lookup has no skb argument). */
struct cpu_state {
	__u64 seq;
	__u64 cur_skb;
	__u64 cur_path;
	__u64 cur_ts;
	__u8 cur_saddr[16]; /* IPv4 in the first 4 bytes */
	__u8 cur_daddr[16];
	__u32 cur_ifindex;  /* the device it was received on: its input route lookup's iif */
	__u16 cur_dport;    /* destination port (host order), to match the socket it is queued to */
	__u8 cur_proto;
	__u8 cur_family;
	__u8 cur_replied;   /* the kernel started a reply to it: later lookups are the reply's (paths.bpf.h) */
	__u8 _pad[3];
	__u32 drop_reason;  /* the drop program's reason (or evidence), for its continuation (pktpath.bpf.c) */
	__u64 nft_path; /* path of the packet nft_do_chain is evaluating (see hooks.bpf.h) */
	__u64 qx_skb;   /* the skb __ip_queue_xmit/ip6_xmit was last called with (hooks.bpf.h) */
	__u64 qx_ts;    /* ... and when */
	__u64 bucket_jiffies; /* the tick budget_step() last read the clock in (paths.bpf.h) */
	__u64 bucket;         /* ... and the budget step (ns >> 27) it found */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_state);
} cpu_state SEC(".maps");

/*
 * The drop program's continuation (pktpath.bpf.c): slot 0 holds drop_capture
 * once the agent's second load is done (exporter/loader/engine.py).  While it
 * is empty the tail call falls through: drops are counted, and only their
 * paths wait for the second load.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} drop_next SEC(".maps");

/*
 * The sampling windows' function hooks as one kprobe.multi link each way
 * (pktpath.bpf.c: window_call, window_return): slot i holds the kprobe.multi
 * twin of one hook (hooks.bpf.h), and the link gives each function its slot
 * as the attach cookie.  Filled by exporter/loader/window_links.py.
 */
#define WINDOW_SLOTS 32
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, WINDOW_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} window_calls SEC(".maps"), window_returns SEC(".maps");

/* drops.bpf.h: the device of the last reassembly-timeout drop on this CPU that had one. */
struct frag_owner {
	char ifname[16];
	__u32 ifindex;
	__u32 netns;
	__u64 ts;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct frag_owner);
} frag_owner SEC(".maps");

/* The agent's own endpoints (pktpath.h: struct own_endpoint), written by the
 * agent; paths.bpf.h never follows a packet to or from one of them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct own_endpoint);
	__type(value, __u8);
} own_endpoints SEC(".maps");

/* Referenced nowhere: the ring buffer's record types are otherwise only used
 * through pointers in inlined code, and would not reach the object's BTF,
 * where exporter/model/abi.py checks its ctypes mirrors against them. */
struct hop_event *abi_hop_event __attribute__((unused));
enum hop_id abi_hop_id __attribute__((unused));
enum pktpath_stat abi_stat __attribute__((unused));
enum drop_slot_state abi_drop_slot_state __attribute__((unused));
enum path_gate_slot abi_path_gate_slot __attribute__((unused));
enum budget_slot abi_budget_slot __attribute__((unused));
struct own_endpoint *abi_own_endpoint __attribute__((unused));

static __always_inline void stat_add(enum pktpath_stat slot, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &slot);

	if (v)
		*v += n;
}

static __always_inline void stat_inc(enum pktpath_stat slot)
{
	stat_add(slot, 1);
}

#endif /* PKTPATH_MAPS_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The ABI between pktpath's BPF programs and its Python side: map keys,
 * map values and stat slots.  Fixed-width types only, explicit padding, no
 * bitfields: exporter/model/abi.py mirrors every struct here with ctypes
 * and checks the sizes against this object's BTF when the object is opened.
 */
#ifndef PKTPATH_H
#define PKTPATH_H

/* Key of the drop_counts map: one Prometheus series per distinct key. */
struct drop_key {
	/* Name at drop time, not resolved later: netns inodes and ifindexes are
	 * recycled when pods come and go, so (netns, ifindex) -> name resolved at
	 * scrape time can name the wrong interface.  Empty when skb->dev is NULL. */
	char ifname[16];
	/* Kernels without drop reasons (before 5.17) only: the kfree_skb call site
	 * (the tracepoint's `location`), which userspace names from kallsyms.  0 on
	 * kernels with reasons, so their keys, and series, stay as they were. */
	__u64 location;
	/* enum skb_drop_reason, raw (subsystem bits included).  Kernels without
	 * reasons: pktpath's own evidence instead (DROP_EVIDENCE_* below, drops.bpf.h). */
	__u32 reason;
	__u32 ifindex;  /* skb->dev, else skb->skb_iif, else 0 */
	__u32 netns;    /* inode of the device's (else socket's) netns, 0 if unknown */
	__u16 l3_proto; /* ethertype, host byte order (0x0800 IPv4, 0x86dd IPv6) */
	__u8 l4_proto;  /* IPPROTO_* of the transport (IPv6: past extension headers), 0 when not IP */
	__u8 flags;     /* DROP_KEY_* */
};

/* The IP header was cut short (a runt or truncated frame): l4_proto is 0, not
 * a byte read past the packet's end. */
#define DROP_KEY_TRUNCATED 0x1

/*
 * Kernels without drop reasons: what the kfree_skb program reports in their
 * place (drop_key.reason, hop_event.reason), the facts from which userspace
 * derives the reason a newer kernel would give at the same call site
 * (exporter/decoders/drop_locations.py).  0 when nothing is known.
 */
#define DROP_EVIDENCE_ERRNO 0xff        /* errno of the packet's failed route: the rp_filter
					 * check's -EXDEV, else its error route's dst.error */
#define DROP_EVIDENCE_IN_DEV 0x100      /* the receiving device has IPv4 configured (in_device) ... */
#define DROP_EVIDENCE_FORWARDING 0x200  /* ... with forwarding on (IN_DEV_FORWARD) */

/* Value of drop_counts, one per CPU (BPF_MAP_TYPE_PERCPU_HASH). */
struct drop_value {
	__u64 packets;
	__u64 bytes;
};

/*
 * The drop_slots array: a per-CPU, direct-mapped cache in front of
 * drop_counts (drops.bpf.h says why).  Entry cpu * DROP_SLOTS_PER_CPU + i.
 */
#define DROP_SLOTS_PER_CPU 256 /* power of two */
#define DROP_SLOT_BITS 8       /* log2(DROP_SLOTS_PER_CPU) */

enum drop_slot_state {
	SLOT_FREE = 0,     /* the kernel may claim it */
	SLOT_CLAIMED = 1,  /* key is set; the kernel counts into it */
	SLOT_RETIRED = 2,  /* userspace is clearing it: the kernel neither counts nor claims */
};

struct drop_slot {
	struct drop_key key;
	__u64 packets;
	__u64 bytes;
	__u32 state;      /* enum drop_slot_state */
	__u32 _pad;       /* 64 bytes: one cache line, never shared by two CPUs' slots */
};

/*
 * Slots of the per-CPU `stats` array: events the kernel side could not
 * record the normal way.  Each one becomes a counter, so no loss is silent.
 */
enum pktpath_stat {
	STAT_DROP_MAP_FULL = 0, /* a drop whose key found drop_counts full */
	STAT_RING_FULL,         /* a hop event the events ring had no room for */
	STAT_PATH_BUDGET,       /* a sampled packet refused by sampling.max_paths_per_second */
	STAT_TRACK_INSERT,      /* packets entered into the tracked map */
	STAT_TRACK_DELETE,      /* packets removed from it at a terminal hop */
	STAT_TRACK_FULL,        /* a tracked-map insert that failed */
	STAT_TRACK_STALE,       /* a tracked pointer reused by a different packet */
	STAT_SAMPLED_RATE,      /* paths started by the 1-in-N sample */
	STAT_SAMPLED_DROP,      /* paths started by drop capture */
	STAT_VERDICT_MAP_FULL,  /* a verdict counter update that found its map full */
	STAT_STASH_MISMATCH,    /* a kprobe and its kretprobe that did not meet (hooks.bpf.h: stash_pop3) */
	STAT_DROP_BUDGET,       /* a drop capture refused by sampling.max_drop_paths_per_second */
	STAT__MAX,
};

/* ---- packet paths ------------------------------------------------------ */

/* Where an event was recorded; names in exporter/model/path.py (Hop) and the hop table, exporter/model/hops.py. */
enum hop_id {
	HOP_NETIF_RECEIVE = 1, /* tp net:netif_receive_skb */
	HOP_FIB_LOOKUP,        /* tp fib:fib_table_lookup, attributed per CPU */
	HOP_DEV_QUEUE,         /* tp net:net_dev_queue */
	HOP_DEV_XMIT,          /* tp net:net_dev_xmit */
	HOP_DELIVER,           /* tp skb:skb_copy_datagram_iovec */
	HOP_CONSUME,           /* tp skb:consume_skb */
	HOP_DROP,              /* tp skb:kfree_skb */
	/* function hooks (fentry/fexit, else kprobe/kretprobe): stock kernels */
	HOP_IP_RCV,            /* ip_rcv / ipv6_rcv entry */
	HOP_NF_HOOK,           /* nf_hook_slow: entry (phase 0) and verdict (phase 1) */
	HOP_NF_CHAIN,          /* nft_do_chain exit: table/chain and verdict */
	HOP_RP_FILTER,         /* fib_validate_source exit: 0 pass, <0 fail */
	HOP_ROUTE_INPUT,       /* ip_route_input_noref exit: 0 found, else errno or drop reason */
	HOP_IP_FORWARD,        /* ip_forward / ip6_forward entry */
	HOP_LOCAL_DELIVER,     /* ip_local_deliver entry */
	HOP_IP_OUTPUT,         /* ip_output / ip6_output entry */
	HOP_IP_RCV_FINISH,     /* ip_rcv_finish / ip6_rcv_finish entry: past PRE_ROUTING */
	HOP_IP_FORWARD_FINISH, /* ip_forward_finish / ip6_forward_finish entry: past FORWARD */
	HOP_IP_QUEUE_XMIT,     /* __ip_queue_xmit / ip6_xmit entry (reported at ip_output) */
	HOP_IP_FINISH_OUTPUT,  /* ip_finish_output / ip6_finish_output entry: past POST_ROUTING */
	HOP_IPT_TABLE,         /* ipt_do_table exit: iptables-legacy table and verdict */
	HOP_SOCK_QUEUE,        /* tp sock:sk_data_ready (6.13+): queued to a local socket */
};

/* First-hop snapshot of the headers.  Addresses are 16 bytes; IPv4 uses the
 * first 4.  Ports and ICMP fields in host byte order. */
struct pkt_header {
	__u64 extra; /* what tells apart packets with equal headers: TCP seq, ICMP echo
		      * id+seq, or the first 8 UDP payload bytes (read_header) */
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 tcp_seq;
	__u16 sport;
	__u16 dport;
	__u16 ip_len;
	__u16 ip_id;
	__u8 family; /* 4 or 6 */
	__u8 protocol;
	__u8 tos;
	__u8 ttl;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 flags; /* HDR_*: what could not be read within the packet */
};

/* pkt_header.flags.  Every header read stops at the packet's end (the linear
 * data, packet.bpf.h): what lies past it was never this packet's. */
#define HDR_TRUNCATED 0x1 /* the IP header is cut short: only family and ip_len (bytes present) are set */
#define HDR_NO_L4 0x2     /* no transport header to read: cut short, or a non-first fragment */

#define EV_HEADER 0x1  /* hdr is valid: the first event of a path */
#define EV_BY_DROP 0x2 /* the path exists because the packet was dropped */

/* hop_event.phase of a HOP_FIB_LOOKUP: whose lookup it was (paths.bpf.h:
 * fib_lookup_kind).  A reply the kernel sends for the packet (ICMP error, TCP
 * reset) makes lookups of its own; they are not the packet's hops. */
#define FIB_ROUTE 0     /* the packet's input route lookup */
#define FIB_RP_FILTER 1 /* rp_filter's reverse lookup, towards the packet's source */

/* One record in the `events` ring buffer. */
struct hop_event {
	__u64 path_id;  /* (cpu << 48) | per-CPU sequence: unique, unlike skb pointers */
	__u64 ts_ns;    /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 location; /* kfree_skb/consume_skb call site, 0 elsewhere */
	__u32 hop;      /* enum hop_id */
	__u32 cpu;
	__u32 ifindex;
	__u32 netns;
	__u32 len;      /* skb->len at this hop */
	__s32 verdict;  /* fib: lookup error (0 found); xmit: driver rc */
	__u32 reason;   /* kfree_skb drop reason (kernels without reasons: DROP_EVIDENCE_*) */
	__u32 table;    /* fib table id */
	__u8 flags;     /* EV_* */
	__u8 nf_family; /* nf hops: NFPROTO_* */
	__u8 nf_hook;   /* nf hops: NF_INET_* */
	__u8 phase;     /* 0 entry, 1 exit (hops with both); fib: FIB_* */
	__u8 fib_family; /* fib: 4 or 6 */
	__u8 _pad;
	__s16 route_error; /* route input: the error route's errno (hooks.bpf.h), 0 for a real route */
	__u8 fib_saddr[16]; /* fib: the lookup's flow (IPv4 in the first 4 bytes) */
	__u8 fib_daddr[16];
	char ifname[16];
	char out_ifname[16]; /* fib: the next hop's device; nf_hook: the out device */
	char detail[32];     /* nft: table and chain names, 16 bytes each; ipt: table */
	struct pkt_header hdr;
};

/* ---- verdict counters (function hooks; every packet, unsampled) -------- */

struct nf_verdict_key {
	__u8 family;  /* NFPROTO_* */
	__u8 hook;    /* NF_INET_* */
	__u8 verdict; /* NF_DROP 0, NF_ACCEPT 1, NF_STOLEN 2, NF_QUEUE 3, NF_REPEAT 4 */
	__u8 _pad;
	char table[32];
};

/* Key of route_lookups (hooks.bpf.h: hook_route_input_exit). */
struct route_key {
	__s32 ret;         /* return value: 0, -errno, or a drop reason on 6.13+ */
	__s32 route_error; /* with ret 0: the error route's errno (0 for a real route) */
};

struct rp_filter_key {
	__u8 failed;  /* fib_validate_source returned < 0 */
	__u8 _pad[3];
	__s32 ret;
	char ifname[16];
};

/*
 * Runtime knobs, changed live (SIGHUP, the shell's src/dst) without
 * reloading programs, and changed atomically: the filter state exists in
 * FILTER_GENERATIONS generations, `path_generation` names the one in force,
 * and userspace writes a new filter into the other one in full before it
 * switches with one 4-byte store (exporter/paths/kernel_config.py).  A
 * program reads the generation once, at paths_config(), and uses that
 * generation's path_config entry, trie keys and interface keys throughout,
 * so it never sees a half-written filter or a mix of two.
 */
#define FILTER_GENERATIONS 2
#define MAX_PORT_RANGES 16
/* Per generation; the maps hold FILTER_GENERATIONS times as many (maps.bpf.h).
 * Config validation refuses more (exporter/config/schema.py, via abi.py). */
#define MAX_FILTER_CIDRS 1024  /* filter_src, and filter_dst, each */
#define MAX_FILTER_IFACES 256  /* filter_ifaces */

#define FILTER_SRC 0x1   /* filter_src LPM trie must match */
#define FILTER_DST 0x2   /* filter_dst LPM trie must match */
#define FILTER_PROTO 0x4 /* protocols bitmap must have the protocol */
#define FILTER_PORT 0x8  /* sport or dport in one of the ranges */
#define FILTER_IFACE 0x10 /* first-hop device name in filter_ifaces */

struct port_range {
	__u16 lo;
	__u16 hi;
};

struct path_config {
	__u32 enabled;        /* follow packets at all */
	__u32 one_in;         /* 1-in-N sample at the first hop; 0: none (as configured: see sample_below) */
	__u32 drop_one_in;    /* 1-in-N of untracked drops become one-hop paths; 0: off */
	__u32 max_paths;      /* new sampled paths per budget window, host-wide; 0: unlimited */
	__u32 filter_flags;   /* FILTER_* */
	__u32 n_port_ranges;
	struct port_range ports[MAX_PORT_RANGES];
	__u8 protocols[32];   /* bitmap of IP protocol numbers */
	/* The 1-in-N tests as compares, not divisions (a 64-bit div costs ~25 ns
	 * on every packet): chosen when the top 32 bits of the sample hash, or a
	 * random u32 for drops, are below 2^32 / N.  0: never; 2^32: always. */
	__u64 sample_below;
	__u64 drop_sample_below;
	__u32 max_drop_paths; /* new drop-captured paths per budget window, host-wide; 0: unlimited */
	__u32 generation;     /* its own index in path_config: the keys of filter_src/dst/ifaces it uses */
	/* Sampling windows (exporter/paths/windows.py): 1 when the agent opens
	 * and closes windows; the entry hops then sample at path_window's
	 * threshold instead of sample_below. */
	__u32 windowed;
	__u32 _pad;
};

/*
 * The next or current sampling window, the one entry of `path_window`.  The
 * agent attaches the path hooks shortly before a window opens and arms it
 * then: entry hops sample 1 in N (sample_below = 2^32 / N, N adapted to the
 * path budget) while bpf_ktime_get_ns() is in [open_ns, close_ns), so a
 * window opens and closes on time to the nanosecond on every CPU, however
 * late the agent's thread runs.  Packets already followed keep their hops
 * until the hooks detach.  The agent writes the entry only while no window is
 * open (armed before open_ns, cleared after close_ns), so a program reading it
 * mid-write sees a closed window whichever fields are old or new.
 */
struct path_window {
	__u64 sample_below; /* 0: disarmed */
	__u64 open_ns;      /* CLOCK_MONOTONIC, as bpf_ktime_get_ns() */
	__u64 close_ns;
	__u32 one_in;       /* the N of sample_below, for bpftool readers */
	__u32 number;       /* windows armed since the agent started */
	/* New rate-sampled paths this window may start (0: unlimited): the
	 * budget over the window's length, counted exactly for the window in a
	 * budget bucket of its own (WINDOW_BUDGET_BUCKET | number) instead of
	 * the 1.07 s time buckets a window's edges would split. */
	__u32 max_paths;
	__u32 _pad;
};

/* A window budget's mark carries this bit: a budget step (ns >> 27) never does. */
#define WINDOW_BUDGET_BUCKET (1ULL << 63)

/* Per-second budgets count in time buckets of 2^30 ns (1.07 s): a shift, not
 * a division.  Slots of the `path_budget` array: sampled paths and drop
 * captures draw from separate budgets, so neither can starve the other. */
#define BUDGET_WINDOW_SHIFT 30
/* A per-second budget is a token bucket (paths.bpf.h: rate_credit): it holds
 * at most a time bucket's quota, and is topped up by an eighth of it every
 * 2^(30 - BUDGET_PACE_SHIFT) ns (134 ms), its credit counted in eighths of a
 * path so that a step's share is exact. */
#define BUDGET_PACE_SHIFT 3
enum budget_slot {
	BUDGET_RATE = 0,
	BUDGET_DROP = 1,
	BUDGET__MAX,
};

struct budget_state {
	/* A window's budget: the bucket it counts (WINDOW_BUDGET_BUCKET | the
	 * window's number).  A per-second budget: the step its credit was last
	 * topped up in (ns >> 27). */
	__u64 mark;
	/* A window's budget: paths started in the window.  A per-second budget:
	 * the credit left, in eighths of a path (below 0 when CPUs that took the
	 * last of it together overdrew it; the next top-up pays that back). */
	__s64 count;
};

/* LPM trie key for filter_src/filter_dst: the generation, then the address,
 * IPv4 as ::ffff:a.b.c.d.  The generation byte is part of every prefix
 * (prefixlen = 8 + 96 + v4 prefix, or 8 + v6 prefix), so a lookup in one
 * generation never matches an entry of the other. */
struct lpm_key {
	__u32 prefixlen;
	__u8 generation;
	__u8 addr[16];
	__u8 _pad[3];
};

/* Key of filter_ifaces: the generation, then the device name. */
struct iface_key {
	__u32 generation;
	char name[16];
};

/*
 * Key of `own_endpoints`: where the agent's own connections end (its /metrics
 * listener, its OTLP collector, the Kubernetes API).  A packet from or to one
 * of them, in the agent's network namespace, is never followed: the agent must
 * not trace itself.  An all-zero addr matches any address (a listener on
 * 0.0.0.0 or ::).  IPv4 addresses fill the first 4 bytes.
 */
struct own_endpoint {
	__u32 netns;
	__u8 family; /* 4 or 6 */
	__u8 protocol;
	__u16 port;  /* host byte order */
	__u8 addr[16];
};

/*
 * Value of the `tracked` hash, keyed by skb pointer.  A pointer is reused as
 * soon as its packet is freed, and some frees have no tracepoint, so every hop
 * that can read the skb checks that it still holds the same packet
 * (paths.bpf.h: track_verify).
 */
struct track {
	__u64 path_id;
	__u64 ident;    /* packet_ident(): what no hop rewrites (protocol, IP id, length, payload bytes) */
	__u64 flow;     /* flow_ident(): addresses and ports as last seen; NAT may rewrite them */
	__u64 born_ns;  /* bpf_ktime_get_ns() at insert: userspace reaps entries no hop ended */
	__u64 seen_ns;  /* when an entry hop last saw it (a NAT rewrite happens within moments) */
	__u32 netns;    /* ... and in which network namespace */
	__u8 flags;     /* EV_BY_DROP */
	__u8 _pad[3];
};

/* Slots of the `path_gate` array (paths.bpf.h: tracking_anything). */
enum path_gate_slot {
	GATE_LIVE = 0,   /* s64: inserts minus the kernel's deletes (atomic adds) */
	GATE_REAPED = 1, /* u64: entries userspace deleted; written by userspace only */
	GATE__MAX,
};

#endif /* PKTPATH_H */

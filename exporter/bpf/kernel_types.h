/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel-internal types pktpath reads, declared by hand.
 *
 * Why not a generated vmlinux.h: it is ~3 MB of one build host's kernel, it
 * needs bpftool and /sys/kernel/btf at build time (a Docker build stage has
 * neither), and it hides which fields we depend on.  Every struct here is
 * marked preserve_access_index, so clang emits CO-RE relocations and libbpf
 * rewrites each offset against the running kernel's BTF at load time: the
 * declarations need the right field *names* and types, not the right layout.
 * Fields that sit in anonymous unions/structs in the kernel (sk_buff's
 * dev, network_header, protocol ...) are matched through those by libbpf.
 *
 * uapi headers (linux/bpf.h, linux/ip.h ...) stay the source of stable ABI
 * types; only non-uapi structs live here.
 */
#ifndef PKTPATH_KERNEL_TYPES_H
#define PKTPATH_KERNEL_TYPES_H

#include <linux/types.h>
#include <linux/in6.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct ns_common {
	unsigned int inum;
};

/* Only what fib6_table_lookup's "no route" test reads (paths.bpf.h). */
struct netns_ipv6 {
	struct fib6_info *fib6_null_entry;
};

struct net {
	struct ns_common ns;
	struct netns_ipv6 ipv6;
};

typedef struct {
	struct net *net;
} possible_net_t;

/* IPv4 settings of a device: cnf.data[IPV4_DEVCONF_<NAME> - 1] (uapi linux/ip.h). */
struct ipv4_devconf {
	int data[32];
};

struct in_device {
	struct ipv4_devconf cnf;
};

struct net_device {
	char name[16];
	int ifindex;
	possible_net_t nd_net;
	struct in_device *ip_ptr; /* NULL when IPv4 is not configured on it */
};

struct sock_common {
	unsigned short skc_family;
	__u16 skc_num; /* local port, host byte order */
	possible_net_t skc_net;
};

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol; /* a u16 since 5.6 (a bitfield before) */
};

struct dst_entry {
	short error; /* the route's verdict: 0, or -ENETUNREACH ... for an error route */
};

struct sk_buff {
	unsigned long _skb_refdst; /* dst_entry pointer | SKB_DST_NOREF (bit 0) */
	struct net_device *dev;
	struct sock *sk;
	int skb_iif;
	unsigned int len;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	/* sk_buff_data_t: an offset from head on 64-bit kernels
	 * (NET_SKBUFF_DATA_USES_OFFSET), the only ones this object is built for.
	 * It ends the linear data: header reads stop there (packet.bpf.h). */
	unsigned int tail;
	unsigned char *head;
};

/* uapi's linux/icmp.h pulls in libc's sys/socket.h, which does not build
 * for -target bpf: declare the two fields we read. */
struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	union {
		__be32 gateway; /* read whole: the echo id and sequence */
	} un;
};

/* netfilter: nf_hook_slow() and nft_do_chain() arguments. */
struct nf_hook_state {
	__u8 hook;
	__u8 pf;
	struct net_device *in;
	struct net_device *out;
};

struct nft_pktinfo {
	struct sk_buff *skb;
	const struct nf_hook_state *state;
};

/* Before 5.15 the hook state sat in the x_tables compatibility member (compat.bpf.h). */
struct xt_action_param {
	const struct nf_hook_state *state;
};

struct nft_pktinfo___xt {
	struct sk_buff *skb;
	struct xt_action_param xt;
};

/* x_tables (iptables-legacy): ipt_do_table()'s table; name is an array. */
struct xt_table {
	char name[32];
};

struct nft_table {
	char *name;
};

struct nft_chain {
	struct nft_table *table;
	char *name;
};

/* fib_table_lookup / fib6_table_lookup tracepoint arguments (no skb: see
 * paths.bpf.h).  flowic_iif tells an input route lookup (the receiving device)
 * from the output lookups (LOOPBACK_IFINDEX) of replies the kernel sends,
 * and of rp_filter's reverse lookup; flowic_proto tells those two apart. */
struct flowi_common {
	int flowic_oif;
	int flowic_iif;
	__u8 flowic_proto;
};

struct flowi4 {
	struct flowi_common __fl_common;
	__be32 saddr;
	__be32 daddr;
};

struct flowi6 {
	struct flowi_common __fl_common;
	struct in6_addr daddr;
	struct in6_addr saddr;
};

struct fib_nh_common {
	struct net_device *nhc_dev;
};

struct fib6_nh {
	struct fib_nh_common nh_common;
};

struct fib6_info;

struct fib6_result {
	struct fib6_nh *nh;
	struct fib6_info *f6i;
	__u8 fib6_type; /* RTN_*: the route's type decides the lookup's error */
};

struct fib6_table {
	__u32 tb6_id;
};

/* IPv6 fragment header (include/net/ipv6.h, not uapi). */
struct frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

/*
 * Kprobe context, with the kernel's register names.  bpf_tracing.h's
 * PT_REGS_PARMn() use these names when __VMLINUX_H__ is defined (set in
 * pktpath.bpf.c), and CO-RE relocates the offsets.
 */
struct pt_regs {
	unsigned long di, si, dx, cx, r8, r9, ax, sp, ip;
};

struct user_pt_regs { /* arm64 */
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
};

#pragma clang attribute pop

/*
 * Values are placeholders: CO-RE enum relocations (bpf_core_enum_value)
 * replace them with the running kernel's numbers, which differ between
 * kernels.  Userspace never uses these; it reads names from BTF.
 */
enum skb_drop_reason {
	SKB_NOT_DROPPED_YET = 0,
	SKB_CONSUMED = 1,
	SKB_DROP_REASON_FRAG_REASM_TIMEOUT = 2,
};

#endif /* PKTPATH_KERNEL_TYPES_H */

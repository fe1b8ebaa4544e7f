/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The ABI between pktpath's BPF programs and its Python side: map keys,
 * map values and stat slots.  Fixed-width types only, explicit padding, no
 * bitfields: exporter/decoders/abi.py mirrors every struct here with ctypes
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
	__u32 reason;   /* enum skb_drop_reason, raw (subsystem bits included) */
	__u32 ifindex;  /* skb->dev, else skb->skb_iif, else 0 */
	__u32 netns;    /* inode of the device's (else socket's) netns, 0 if unknown */
	__u16 l3_proto; /* ethertype, host byte order (0x0800 IPv4, 0x86dd IPv6) */
	__u8 l4_proto;  /* IPPROTO_* from the IP header, 0 when not IP */
	__u8 _pad;
};

/* Value of drop_counts, one per CPU (BPF_MAP_TYPE_PERCPU_HASH). */
struct drop_value {
	__u64 packets;
	__u64 bytes;
};

/*
 * Slots of the per-CPU `stats` array: events the kernel side could not
 * record the normal way.  Each one becomes a counter, so no loss is silent.
 */
enum pktpath_stat {
	STAT_DROP_MAP_FULL = 0, /* a drop whose key found drop_counts full */
	STAT__MAX,
};

#endif /* PKTPATH_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Reading packet headers from an skb, on locked-down kernels and old ones.
 *
 * Headers sit at skb->head + skb->network_header.  bpf_probe_read_kernel is
 * refused under lockdown, so where the kernel has it every header is reached
 * through bpf_rdonly_cast(ptr, <kernel BTF id of the header struct>): the
 * verifier then allows direct, fault-handled loads (a bad pointer reads as
 * 0).  Kernels before 6.2 lack that kfunc and use bpf_probe_read_kernel.
 */
#ifndef PKTPATH_PACKET_H
#define PKTPATH_PACKET_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "compat.h"
#include "pktpath.h"

/* skb->network_header is (u16)~0 until the stack sets it (skb_network_header_was_set). */
#define NETWORK_HEADER_UNSET ((__u16)~0U)
/* linux/in.h drags in libc headers that do not build for -target bpf. */
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
#define IP_OFFSET_MASK 0x1FFF

/* A kprobe's raw pointer as a typed one, where bpf_rdonly_cast exists (6.2+).
 * Without it the pointer stays as it is and every read of it goes through
 * KREAD (compat.h), i.e. BPF_CORE_READ, so nothing dereferences it directly. */
#define CAST(type, ptr) \
	((type *)(have_rdonly_cast() ? bpf_rdonly_cast((ptr), bpf_core_type_id_kernel(type)) : (void *)(ptr)))

/*
 * Header loaders: copy one header from kernel memory to the stack.
 *
 * 6.2+ (and the only way under lockdown): through bpf_rdonly_cast, one member
 * at a time -- verifiers before ~6.4 refuse a load that straddles two members
 * of a BTF struct.  Before 6.2 (no such kfunc; the weak extern resolves to 0
 * and libbpf folds the test to a constant the verifier prunes on): one
 * bpf_probe_read_kernel of the whole header.
 */
static __always_inline void load_iphdr(unsigned char *p, struct iphdr *out)
{
	if (have_rdonly_cast()) {
		struct iphdr *ip = CAST(struct iphdr, p);

		((__u8 *)out)[0] = ((__u8 *)ip)[0]; /* version and ihl, one byte of bitfields */
		out->tos = ip->tos;
		out->tot_len = ip->tot_len;
		out->id = ip->id;
		out->frag_off = ip->frag_off;
		out->ttl = ip->ttl;
		out->protocol = ip->protocol;
		out->saddr = ip->saddr;
		out->daddr = ip->daddr;
	} else {
		bpf_probe_read_kernel(out, sizeof(*out), p);
	}
}

static __always_inline void load_ipv6hdr(unsigned char *p, struct ipv6hdr *out)
{
	if (have_rdonly_cast()) {
		struct ipv6hdr *ip6 = CAST(struct ipv6hdr, p);

		((__u8 *)out)[0] = ((__u8 *)ip6)[0]; /* version and priority */
		out->flow_lbl[0] = ip6->flow_lbl[0];
		out->payload_len = ip6->payload_len;
		out->nexthdr = ip6->nexthdr;
		out->hop_limit = ip6->hop_limit;
		__builtin_memcpy(&out->saddr, &ip6->saddr, 16); /* within one member */
		__builtin_memcpy(&out->daddr, &ip6->daddr, 16);
	} else {
		bpf_probe_read_kernel(out, sizeof(*out), p);
	}
}

static __always_inline void load_tcphdr(unsigned char *p, struct tcphdr *out)
{
	if (have_rdonly_cast()) {
		struct tcphdr *th = CAST(struct tcphdr, p);

		out->source = th->source;
		out->dest = th->dest;
		out->seq = th->seq;
		((__u8 *)out)[13] = ((__u8 *)th)[13]; /* FIN..CWR: a byte of bitfields */
	} else {
		bpf_probe_read_kernel(out, sizeof(*out), p);
	}
}

static __always_inline void load_udphdr(unsigned char *p, struct udphdr *out)
{
	if (have_rdonly_cast()) {
		struct udphdr *uh = CAST(struct udphdr, p);

		out->source = uh->source;
		out->dest = uh->dest;
		out->len = uh->len;
		out->check = uh->check;
	} else {
		bpf_probe_read_kernel(out, sizeof(*out), p);
	}
}

/* ICMP and ICMPv6 share the layout we read: type, code, checksum, 4 bytes (echo id+seq). */
static __always_inline void load_icmphdr(unsigned char *p, struct icmphdr *out)
{
	if (have_rdonly_cast()) {
		struct icmphdr *ic = CAST(struct icmphdr, p);

		out->type = ic->type;
		out->code = ic->code;
		out->un.gateway = ic->un.gateway;
	} else {
		bpf_probe_read_kernel(out, sizeof(*out), p);
	}
}

static __always_inline unsigned char *network_header(struct sk_buff *skb)
{
	__u16 off = KREAD(skb->network_header, skb, network_header);

	if (off == NETWORK_HEADER_UNSET)
		return 0;
	return KREAD(skb->head, skb, head) + off;
}

/*
 * L3/L4 protocol only: what the drop counters key on.  IPv6 reports the first
 * next-header; walking extension headers is not worth the instructions on a
 * path that runs for every drop.
 */
static __always_inline void read_protocols(struct sk_buff *skb, __u16 *l3, __u8 *l4)
{
	unsigned char *nh = network_header(skb);

	*l3 = bpf_ntohs(KREAD(skb->protocol, skb, protocol));
	if (!nh)
		return;
	if (*l3 == ETH_P_IP) {
		struct iphdr ip = {};

		load_iphdr(nh, &ip);
		*l4 = ip.protocol;
	} else if (*l3 == ETH_P_IPV6) {
		struct ipv6hdr ip6 = {};

		load_ipv6hdr(nh, &ip6);
		*l4 = ip6.nexthdr;
	}
}

/*
 * The first-hop snapshot; 0 for an IP packet, -1 otherwise.  h->extra gets
 * the bytes that tell apart packets with identical headers: the TCP sequence
 * number, the ICMP id/sequence, or the first 8 payload bytes of UDP
 * (unconnected UDP with DF sends every datagram with IP id 0).
 *
 * `full` is a constant at each call site.  0 fills only what sample_hash()
 * and packet_ident() read -- the entry hops' read of every packet -- and the
 * compiler drops the other loads; 1 adds the rest for the event of a packet
 * that was chosen.
 */
static __always_inline int read_packet(struct sk_buff *skb, struct pkt_header *h, const int full)
{
	unsigned char *nh = network_header(skb);
	__u16 l3 = bpf_ntohs(KREAD(skb->protocol, skb, protocol));
	unsigned char *l4;
	int need_extra;

	if (!nh)
		return -1;
	if (l3 == ETH_P_IP) {
		struct iphdr ip = {};

		load_iphdr(nh, &ip);
		h->family = 4;
		__builtin_memcpy(h->saddr, &ip.saddr, 4);
		__builtin_memcpy(h->daddr, &ip.daddr, 4);
		h->protocol = ip.protocol;
		h->ip_len = bpf_ntohs(ip.tot_len); /* packet_ident() */
		h->ip_id = bpf_ntohs(ip.id);
		if (full) {
			h->tos = ip.tos;
			h->ttl = ip.ttl;
		}
		if (ip.frag_off & bpf_htons(IP_OFFSET_MASK))
			return 0; /* a non-first fragment carries no L4 header */
		l4 = nh + ip.ihl * 4;
	} else if (l3 == ETH_P_IPV6) {
		struct ipv6hdr ip6 = {};

		load_ipv6hdr(nh, &ip6);
		h->family = 6;
		__builtin_memcpy(h->saddr, &ip6.saddr, 16);
		__builtin_memcpy(h->daddr, &ip6.daddr, 16);
		h->protocol = ip6.nexthdr;
		h->ip_len = bpf_ntohs(ip6.payload_len) + 40;
		if (full) {
			h->tos = (ip6.priority << 4) | (ip6.flow_lbl[0] >> 4);
			h->ttl = ip6.hop_limit;
		}
		l4 = nh + 40;
	} else {
		return -1;
	}

	/* The discriminator tells apart packets whose headers are equal.  An IPv4
	 * id already does (each socket counts its own), so for identity only it is
	 * read where the id is 0 (unconnected UDP with DF) and for IPv6, which has
	 * none: two loads fewer per packet at every entry hop.  Every hop reads the
	 * same id, so every hop makes the same choice. */
	need_extra = full || h->family == 6 || !h->ip_id;
	switch (h->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr th = {};

		load_tcphdr(l4, &th);
		h->sport = bpf_ntohs(th.source);
		h->dport = bpf_ntohs(th.dest);
		if (need_extra)
			h->extra = bpf_ntohl(th.seq);
		if (full) {
			h->tcp_seq = h->extra;
			h->tcp_flags = ((__u8 *)&th)[13];
		}
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr uh = {}, payload = {};

		load_udphdr(l4, &uh);
		h->sport = bpf_ntohs(uh.source);
		h->dport = bpf_ntohs(uh.dest);
		if (need_extra && bpf_ntohs(uh.len) >= sizeof(uh) + 8) {
			/* bpf_rdonly_cast takes struct types only before 6.18: read the
			 * 8 payload bytes after the header as a second udphdr. */
			load_udphdr(l4 + sizeof(uh), &payload);
			__builtin_memcpy(&h->extra, &payload, 8);
		}
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		struct icmphdr ic = {};

		load_icmphdr(l4, &ic);
		h->extra = ic.un.gateway; /* echo id and sequence */
		if (full) {
			h->icmp_type = ic.type;
			h->icmp_code = ic.code;
		}
		break;
	}
	}
	return 0;
}

static __always_inline int read_header(struct sk_buff *skb, struct pkt_header *h)
{
	return read_packet(skb, h, 1);
}

/* Only the packet's identity (sample_hash, packet_ident). */
static __always_inline int read_identity(struct sk_buff *skb, struct pkt_header *h)
{
	return read_packet(skb, h, 0);
}

static __always_inline __u64 mix64(__u64 x)
{
	/* MurmurHash3's finalizer: every input bit flips each output bit with p~1/2. */
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/*
 * The sampling decision is a hash of what the packet *is*, not a random draw:
 * a packet meets several entry hops on one host (a pod's transmit, then the
 * host's receive from the veth) and every one of them must reach the same
 * verdict, or a packet crossing k namespaces would be sampled ~k times as
 * often.  It also makes agents on different nodes sample the same packets,
 * so a sampled packet's trace is complete across nodes.  Identical packets
 * (same addresses, ports, IP id and first payload bytes) share a verdict.
 */
static __always_inline __u64 sample_hash(struct pkt_header *h)
{
	__u64 s0, s1, d0, d1, rest;

	__builtin_memcpy(&s0, h->saddr, 8);
	__builtin_memcpy(&s1, h->saddr + 8, 8);
	__builtin_memcpy(&d0, h->daddr, 8);
	__builtin_memcpy(&d1, h->daddr + 8, 8);
	rest = (__u64)h->sport << 48 | (__u64)h->dport << 32 | (__u64)h->protocol << 16 | h->ip_id;
	/* Runs for every packet at every entry hop: one multiply per word, all
	 * independent (they overlap in the CPU), then one avalanche, instead of a
	 * chain of finalizers.  Odd constants keep each product a bijection. */
	return mix64(s0 * 0x9E3779B97F4A7C15ULL ^ s1 * 0xC2B2AE3D27D4EB4FULL ^ d0 * 0x165667B19E3779F9ULL ^
		     d1 * 0xD6E8FEB86659FD93ULL ^ h->extra * 0xFF51AFD7ED558CCDULL ^ rest * 0xC4CEB9FE1A85EC53ULL);
}

/*
 * What stays the same for one packet from hop to hop, even through NAT
 * (which rewrites addresses and ports): protocol, IP id, length and the
 * payload-derived h->extra.  A tracked skb pointer whose packet no longer has
 * this identity was freed without a tracepoint and reused by a new packet.
 */
static __always_inline __u64 packet_ident(struct pkt_header *h)
{
	return mix64(h->extra ^ ((__u64)h->protocol << 32 | (__u64)h->ip_id << 16 | h->ip_len));
}

#endif /* PKTPATH_PACKET_H */

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
#include "compat.bpf.h"
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
 * KREAD (compat.bpf.h), i.e. BPF_CORE_READ, so nothing dereferences it directly. */
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
/* One loader: `copy` takes the members read from `h` (the typed header) into `out`. */
#define HEADER_LOADER(name, type, copy)                                         \
	static __always_inline void name(unsigned char *p, struct type *out)    \
	{                                                                       \
		if (have_rdonly_cast()) {                                       \
			struct type *h = CAST(struct type, p);                  \
                                                                                \
			copy;                                                   \
		} else {                                                        \
			bpf_probe_read_kernel(out, sizeof(*out), p);            \
		}                                                               \
	}

/* Byte 0 of an IPv4 header is version and ihl, one byte of bitfields. */
HEADER_LOADER(load_iphdr, iphdr,
	      ((__u8 *)out)[0] = ((__u8 *)h)[0]; out->tos = h->tos; out->tot_len = h->tot_len; out->id = h->id;
	      out->frag_off = h->frag_off; out->ttl = h->ttl; out->protocol = h->protocol; out->saddr = h->saddr;
	      out->daddr = h->daddr)
/* Only what the drop counters key on: version, header length and protocol. */
HEADER_LOADER(load_ip_protocol, iphdr, ((__u8 *)out)[0] = ((__u8 *)h)[0]; out->protocol = h->protocol)
/* Byte 0: version and priority; the addresses each within one member. */
HEADER_LOADER(load_ipv6hdr, ipv6hdr,
	      ((__u8 *)out)[0] = ((__u8 *)h)[0]; out->flow_lbl[0] = h->flow_lbl[0];
	      out->payload_len = h->payload_len; out->nexthdr = h->nexthdr; out->hop_limit = h->hop_limit;
	      __builtin_memcpy(&out->saddr, &h->saddr, 16); __builtin_memcpy(&out->daddr, &h->daddr, 16))
HEADER_LOADER(load_opt_hdr, ipv6_opt_hdr, out->nexthdr = h->nexthdr; out->hdrlen = h->hdrlen)
HEADER_LOADER(load_frag_hdr, frag_hdr, out->nexthdr = h->nexthdr; out->frag_off = h->frag_off)
/* Byte 13: FIN..CWR, a byte of bitfields. */
HEADER_LOADER(load_tcphdr, tcphdr,
	      out->source = h->source; out->dest = h->dest; out->seq = h->seq;
	      ((__u8 *)out)[13] = ((__u8 *)h)[13])
HEADER_LOADER(load_udphdr, udphdr,
	      out->source = h->source; out->dest = h->dest; out->len = h->len; out->check = h->check)
/* ICMP and ICMPv6 share the layout we read: type, code, checksum, 4 bytes (echo id+seq). */
HEADER_LOADER(load_icmphdr, icmphdr, out->type = h->type; out->code = h->code; out->un.gateway = h->un.gateway)

/*
 * The packet's network header, and how many of its bytes the packet holds:
 * from skb->network_header to the end of the linear data (skb->tail).  That is
 * the bound of every header read.  Past it the buffer holds whatever it held
 * before (an earlier packet's headers, another namespace's), so a runt or
 * truncated frame must be described by what it has, never by those bytes.
 * Headers in paged fragments (not linear) count as absent: every path that
 * hands an skb to the IP layer has pulled its IP header into the linear part.
 */
static __always_inline unsigned char *network_header(struct sk_buff *skb, __u32 *avail)
{
	__u16 off = KREAD(skb->network_header, skb, network_header);
	__u32 tail = KREAD(skb->tail, skb, tail);

	if (off == NETWORK_HEADER_UNSET)
		return 0;
	*avail = tail > off ? tail - off : 0;
	return KREAD(skb->head, skb, head) + off;
}

/* What read_packet() and read_protocols() found. */
#define PKT_IP 0         /* an IP header, read whole */
#define PKT_NOT_IP -1    /* not IPv4/IPv6 (or no network header yet) */
#define PKT_TRUNCATED 1  /* IPv4/IPv6 by its ethertype, but no whole, valid IP header within the packet */

/* IPv6 extension headers (RFC 8200 4.1; uapi linux/in6.h's IPPROTO_* values
 * need libc headers that do not build for -target bpf). */
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60
#define IPV6_EXT_MAX 6 /* headers walked at most; more is not a packet worth the instructions */
#define IP6_OFFSET_MASK 0xFFF8

/*
 * IPv6: from the fixed header's next-header value through the extension
 * headers to the transport protocol, never past `end` (bytes of the packet
 * from the network header).  Returns the transport protocol; *l4off is its
 * header's offset, or 0 when there is no transport header to read there (a
 * non-first fragment, or more headers than IPV6_EXT_MAX).  PKT_TRUNCATED in
 * *status when an extension header is cut short.
 */
static __always_inline __u8 ipv6_transport(unsigned char *nh, __u8 next, __u32 end, __u32 *l4off, int *status)
{
	__u32 off = sizeof(struct ipv6hdr);

	*l4off = 0;
#pragma unroll
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		if (next == NEXTHDR_FRAGMENT) {
			struct frag_hdr fh = {};

			if (off + sizeof(fh) > end) {
				*status = PKT_TRUNCATED;
				return next;
			}
			load_frag_hdr(nh + off, &fh);
			if (fh.frag_off & bpf_htons(IP6_OFFSET_MASK))
				return fh.nexthdr; /* a non-first fragment: its transport header is elsewhere */
			next = fh.nexthdr;
			off += sizeof(fh);
		} else if (next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST ||
			   next == NEXTHDR_AUTH) {
			struct ipv6_opt_hdr opt = {};

			if (off + sizeof(opt) > end) {
				*status = PKT_TRUNCATED;
				return next;
			}
			load_opt_hdr(nh + off, &opt);
			/* AH counts its length in 4-octet units less 2 (RFC 4302), the others in
			 * 8-octet units not counting the first (RFC 8200). */
			off += next == NEXTHDR_AUTH ? ((__u32)opt.hdrlen + 2) * 4 : ((__u32)opt.hdrlen + 1) * 8;
			next = opt.nexthdr;
		} else {
			*l4off = off;
			return next;
		}
	}
	return next;
}

/*
 * L3/L4 protocol only: what the drop counters key on.  Runs for every drop,
 * so it loads two bytes of an IPv4 header; the IPv6 extension-header walk
 * costs only packets that have extension headers.
 */
static __always_inline void read_protocols(struct sk_buff *skb, struct drop_key *key)
{
	__u32 avail = 0, l4off;
	unsigned char *nh = network_header(skb, &avail);
	int status = PKT_IP;

	key->l3_proto = bpf_ntohs(KREAD(skb->protocol, skb, protocol));
	if (!nh)
		return;
	if (key->l3_proto == ETH_P_IP) {
		struct iphdr ip = {};

		if (avail >= sizeof(ip))
			load_ip_protocol(nh, &ip);
		if (avail < sizeof(ip) || ip.version != 4 || ip.ihl < 5)
			key->flags |= DROP_KEY_TRUNCATED;
		else
			key->l4_proto = ip.protocol;
	} else if (key->l3_proto == ETH_P_IPV6) {
		struct ipv6hdr ip6 = {};

		if (avail < sizeof(ip6)) {
			key->flags |= DROP_KEY_TRUNCATED;
			return;
		}
		load_ipv6hdr(nh, &ip6);
		key->l4_proto = ipv6_transport(nh, ip6.nexthdr, avail, &l4off, &status);
		if (status == PKT_TRUNCATED) {
			key->flags |= DROP_KEY_TRUNCATED;
			key->l4_proto = 0;
		}
	}
}

static __always_inline int header_truncated(struct pkt_header *h, __u32 avail)
{
	h->flags = HDR_TRUNCATED;
	h->ip_len = avail > 0xffff ? 0xffff : avail; /* the bytes there are, not what a header claims */
	return PKT_TRUNCATED;
}

/*
 * The first-hop snapshot: PKT_IP, PKT_NOT_IP or PKT_TRUNCATED.  h->extra gets
 * the bytes that tell apart packets with identical headers: the TCP sequence
 * number, the ICMP id/sequence, or the first 8 payload bytes of UDP
 * (unconnected UDP with DF sends every datagram with IP id 0).  Every read
 * stays inside the packet: the linear data (network_header) and the length
 * the IP header itself gives; a transport header that is not wholly there is
 * not read at all (HDR_NO_L4).
 *
 * `full` is a constant at each call site.  0 fills only what sample_hash(),
 * packet_ident() and flow_ident() read -- the entry hops' read of every
 * packet -- and the compiler drops the other loads; 1 adds the rest for the
 * event of a packet that was chosen.
 */
static __always_inline int read_packet(struct sk_buff *skb, struct pkt_header *h, const int full)
{
	__u32 avail = 0, end, l4off;
	unsigned char *nh = network_header(skb, &avail);
	__u16 l3 = bpf_ntohs(KREAD(skb->protocol, skb, protocol));
	unsigned char *l4;
	int need_extra, status = PKT_IP;

	if (!nh)
		return PKT_NOT_IP;
	if (l3 == ETH_P_IP) {
		struct iphdr ip = {};
		__u32 hlen, tot;

		h->family = 4;
		if (avail < sizeof(ip))
			return header_truncated(h, avail);
		load_iphdr(nh, &ip);
		hlen = ip.ihl * 4;
		if (ip.version != 4 || hlen < sizeof(ip) || hlen > avail)
			return header_truncated(h, avail);
		__builtin_memcpy(h->saddr, &ip.saddr, 4);
		__builtin_memcpy(h->daddr, &ip.daddr, 4);
		h->protocol = ip.protocol;
		h->ip_len = bpf_ntohs(ip.tot_len); /* packet_ident() */
		h->ip_id = bpf_ntohs(ip.id);
		if (full) {
			h->tos = ip.tos;
			h->ttl = ip.ttl;
		}
		tot = h->ip_len;
		end = tot < avail ? tot : avail; /* what is both in the buffer and in this packet */
		if ((ip.frag_off & bpf_htons(IP_OFFSET_MASK)) || tot < hlen) {
			h->flags |= HDR_NO_L4; /* a non-first fragment carries no transport header */
			return PKT_IP;
		}
		l4off = hlen;
	} else if (l3 == ETH_P_IPV6) {
		struct ipv6hdr ip6 = {};
		__u32 tot;

		h->family = 6;
		if (avail < sizeof(ip6))
			return header_truncated(h, avail);
		load_ipv6hdr(nh, &ip6);
		if (ip6.version != 6)
			return header_truncated(h, avail);
		__builtin_memcpy(h->saddr, &ip6.saddr, 16);
		__builtin_memcpy(h->daddr, &ip6.daddr, 16);
		h->ip_len = bpf_ntohs(ip6.payload_len) + sizeof(ip6);
		if (full) {
			h->tos = (ip6.priority << 4) | (ip6.flow_lbl[0] >> 4);
			h->ttl = ip6.hop_limit;
		}
		/* payload_len 0 is a jumbogram's (RFC 2675): its length is elsewhere. */
		tot = ip6.payload_len ? h->ip_len : avail;
		end = tot < avail ? tot : avail;
		h->protocol = ipv6_transport(nh, ip6.nexthdr, end, &l4off, &status);
		if (!l4off) {
			h->flags |= HDR_NO_L4;
			return PKT_IP;
		}
	} else {
		return PKT_NOT_IP;
	}
	l4 = nh + l4off;

	/* The discriminator tells apart packets whose headers are equal.  An IPv4
	 * id already does (each socket counts its own), so for identity only it is
	 * read where the id is 0 (unconnected UDP with DF) and for IPv6, which has
	 * none: two loads fewer per packet at every entry hop.  Every hop reads the
	 * same id, so every hop makes the same choice. */
	need_extra = full || h->family == 6 || !h->ip_id;
	switch (h->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr th = {};

		if (l4off + 14 > end) /* through the flags byte */
			break;
		load_tcphdr(l4, &th);
		h->sport = bpf_ntohs(th.source);
		h->dport = bpf_ntohs(th.dest);
		if (need_extra)
			h->extra = bpf_ntohl(th.seq);
		if (full) {
			h->tcp_seq = h->extra;
			h->tcp_flags = ((__u8 *)&th)[13];
		}
		return PKT_IP;
	}
	case IPPROTO_UDP: {
		struct udphdr uh = {}, payload = {};

		if (l4off + sizeof(uh) > end)
			break;
		load_udphdr(l4, &uh);
		h->sport = bpf_ntohs(uh.source);
		h->dport = bpf_ntohs(uh.dest);
		if (need_extra && bpf_ntohs(uh.len) >= sizeof(uh) + 8 && l4off + sizeof(uh) + 8 <= end) {
			/* bpf_rdonly_cast takes struct types only before 6.18: read the
			 * 8 payload bytes after the header as a second udphdr. */
			load_udphdr(l4 + sizeof(uh), &payload);
			__builtin_memcpy(&h->extra, &payload, 8);
		}
		return PKT_IP;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		struct icmphdr ic = {};

		if (l4off + sizeof(ic) > end)
			break;
		load_icmphdr(l4, &ic);
		h->extra = ic.un.gateway; /* echo id and sequence */
		if (full) {
			h->icmp_type = ic.type;
			h->icmp_code = ic.code;
		}
		return PKT_IP;
	}
	default:
		return PKT_IP; /* a transport we do not read */
	}
	h->flags |= HDR_NO_L4; /* its transport header is cut short */
	return PKT_IP;
}

static __always_inline int read_header(struct sk_buff *skb, struct pkt_header *h)
{
	return read_packet(skb, h, 1);
}

/* Only the packet's identity (sample_hash, packet_ident, flow_ident). */
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
 * this identity was freed without a tracepoint and reused by a new packet;
 * one that still has it may be a look-alike, which flow_ident() tells apart.
 */
static __always_inline __u64 packet_ident(struct pkt_header *h)
{
	return mix64(h->extra ^ ((__u64)h->protocol << 32 | (__u64)h->ip_id << 16 | h->ip_len));
}

/*
 * Where the packet goes: addresses and ports.  NAT rewrites them, so a tracked
 * packet whose flow changed is only still the same packet if the change came
 * within moments, in the namespace where it was last seen (paths.bpf.h:
 * track_verify).  Otherwise it is a look-alike: an RST that answers a SYN is
 * freed where no hop sees it, and the next RST (sequence 0, IP id 0, length
 * 40, like every such RST) reuses its skb on its way to another port.
 */
static __always_inline __u64 flow_ident(struct pkt_header *h)
{
	__u64 s0, s1, d0, d1;

	__builtin_memcpy(&s0, h->saddr, 8);
	__builtin_memcpy(&s1, h->saddr + 8, 8);
	__builtin_memcpy(&d0, h->daddr, 8);
	__builtin_memcpy(&d1, h->daddr + 8, 8);
	return mix64(s0 * 0x9E3779B97F4A7C15ULL ^ s1 * 0xC2B2AE3D27D4EB4FULL ^ d0 * 0x165667B19E3779F9ULL ^
		     d1 * 0xD6E8FEB86659FD93ULL ^ ((__u64)h->sport << 16 | h->dport) * 0xFF51AFD7ED558CCDULL);
}

#endif /* PKTPATH_PACKET_H */

"""Trace and span ids: the packet's deterministic trace id, and random span ids.

The trace id is not random: ``packet_trace_id`` derives it from the packet's identity, so that
agents on several nodes that see the same packet put their spans into the same trace. Only a
packet too short for its IP header, which has no identity, gets a random one (``random_trace_id``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import socket
import struct
import time

from exporter.model.path import PacketHeader, Path

__all__ = [
    "TRACE_ID_BUCKET_NS",
    "packet_trace_id",
    "random_trace_id",
    "span_ids",
    "trace_id_hex",
    "wall_minus_monotonic_ns",
]

TRACE_ID_BUCKET_NS = 1_000_000_000

IPPROTO_TCP = 6

_TRACE_ID_TAG = b"pktpath/trace-id/v2\0"
_FAMILY_PROTOCOL = struct.Struct("!BB")
_IDENTITY = struct.Struct("!HHHIQq")
_INVALID_SPAN_ID = bytes(8)
# Span ids come from the same generator the OpenTelemetry SDK's RandomIdGenerator uses
# (random.getrandbits): unique enough, and no system call per path.
_random_bits = random.getrandbits


def _address_bytes(text: str) -> bytes:
    # Packed form, so "2001:db8::1" and "2001:0db8:0:0::1" (two spellings, one address) hash alike.
    # inet_pton is ~15x faster than ipaddress and packs every address the decoder formats the same
    # way; ipaddress stays the fallback for what inet_pton refuses (a scope id: "fe80::1%eth0").
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
    except (OSError, ValueError):
        pass
    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        return text.encode("utf-8", "surrogateescape")


def packet_trace_id(header: PacketHeader, wall_ns: int, bucket_ns: int = TRACE_ID_BUCKET_NS) -> int:
    """A 128-bit trace id (never 0) from what identifies this packet on every node it crosses.

    Hashed (BLAKE2b, 16-byte digest) over, in a fixed binary layout: a version tag, the address
    family, source and destination address (packed, so spelling does not matter), IP protocol,
    source and destination port, the IPv4 identification field, the TCP sequence number (TCP
    only), ``header.extra`` (the kernel's per-packet discriminator: TCP sequence, ICMP echo
    id/sequence, or the first 8 UDP payload bytes), and the coarse time bucket
    ``wall_ns // bucket_ns`` (``wall_ns``: wall-clock time of the packet's first hop on this node).

    Two agents on two nodes that see the same packet compute the same id, so their spans land in
    one trace. Limits:

    * the bucket: when the packet crosses a bucket boundary between the two nodes (or the nodes'
      clocks disagree by enough to put it in different buckets) the ids differ and the packet shows
      up as two traces. With 1 s buckets and a transit of 100 us, that is 1 packet in 10 000, more
      with clock skew: keep nodes NTP-synchronised;
    * identity: packets identical in every hashed field within one bucket share a trace. For
      IPv4 the IP id tells them apart (but unconnected UDP with DF sends id 0), and ``extra``
      adds the TCP sequence, ICMP echo id/sequence or first UDP payload bytes: only packets
      equal in those too (pure ACKs of one flow, repeated identical datagrams) share a trace;
    * rewriting: NAT (addresses, ports), or middleboxes that rewrite the IP id or TCP sequence
      numbers, change the id between nodes.
    """
    ident = header.ip_id if header.family == 4 else 0
    seq = header.tcp_seq if header.protocol == IPPROTO_TCP else 0
    material = b"".join(
        (
            _TRACE_ID_TAG,
            _FAMILY_PROTOCOL.pack(header.family & 0xFF, header.protocol & 0xFF),
            _address_bytes(header.src),
            b"\0",
            _address_bytes(header.dst),
            b"\0",
            _IDENTITY.pack(
                header.sport & 0xFFFF,
                header.dport & 0xFFFF,
                ident & 0xFFFF,
                seq & 0xFFFFFFFF,
                header.extra & 0xFFFFFFFFFFFFFFFF,
                wall_ns // bucket_ns,
            ),
        )
    )
    trace_id = int.from_bytes(hashlib.blake2b(material, digest_size=16).digest(), "big")
    return trace_id or 1


def random_trace_id() -> int:
    """A random, non-zero 128-bit trace id, for a packet with no identity to share (its header cut short)."""
    return _random_bits(128) or 1


def span_ids(count: int) -> list[bytes]:
    """``count`` random, non-zero 8-byte span ids (big-endian, as OTLP carries them)."""
    raw = _random_bits(64 * count).to_bytes(8 * count, "big")
    ids = [raw[i : i + 8] for i in range(0, 8 * count, 8)]
    if _INVALID_SPAN_ID in ids:  # 0 is the invalid span id; a draw of 2**-64 per span
        ids = [span_id if span_id != _INVALID_SPAN_ID else span_ids(1)[0] for span_id in ids]
    return ids


def wall_minus_monotonic_ns() -> int:
    """Wall-clock minus CLOCK_MONOTONIC nanoseconds: the kernel's hop timestamps are monotonic."""
    return time.time_ns() - time.monotonic_ns()


def trace_id_hex(path: Path, clock_offset_ns: int | None = None) -> str:
    """The trace id (32 hex digits) the spans of ``path`` get, for a drop counter's exemplar when
    this agent exports no spans: another node that exports the same packet uses the same id.
    "" when there is none to give: no hops or no header, or a header cut short (such a packet
    gets a random trace id where spans are made, which nothing here could point to)."""
    header = path.header
    if not path.hops or header is None or header.truncated:
        return ""
    offset = wall_minus_monotonic_ns() if clock_offset_ns is None else clock_offset_ns
    return f"{packet_trace_id(header, path.hops[0].ts_ns + offset):032x}"

"""The hop event decoder reads every field where the ctypes mirror (the C header's layout) says it is."""

from __future__ import annotations

import ctypes
import ipaddress
import os
import random

import pytest

from exporter.decoders.drop_reasons import DropReasons
from exporter.decoders.events import EVENT_SIZE, DecodeError, EventDecoder
from exporter.model import abi, hops
from exporter.model import vocabulary as nf
from exporter.model.path import FibLookup, Hop, HopEvent, PacketHeader, SampledBy

REASONS = DropReasons([("SKB_DROP_REASON_NOT_SPECIFIED", 2), ("SKB_DROP_REASON_NETFILTER_DROP", 6)])
HOPS = hops.BY_ID
FIB_LOOKUPS = {abi.FIB_ROUTE: FibLookup.ROUTE, abi.FIB_RP_FILTER: FibLookup.RP_FILTER}
NAMES = [b"eth0", b"", b"veth1a2b3c4d5e6f", b"lo", "été".encode(), b"\xff\xfe", b"filter", b"x" * 16]


def text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def address(family: int, raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw[:4]) if family == 4 else ipaddress.IPv6Address(raw))


def expected(raw: bytes) -> HopEvent:
    """The event, read field by field through the ctypes mirror."""
    ev = abi.HopEventRaw.from_buffer_copy(raw)
    hop = HOPS[ev.hop]
    header = None
    if ev.flags & abi.EV_HEADER:
        h = ev.hdr
        if h.flags & abi.HDR_TRUNCATED:
            header = PacketHeader(h.family, "", "", 0, length=h.ip_len, truncated=True, no_transport=True)
        else:
            header = PacketHeader(
                h.family,
                address(h.family, bytes(h.saddr)),
                address(h.family, bytes(h.daddr)),
                h.protocol,
                h.sport,
                h.dport,
                h.tos,
                h.ttl,
                h.ip_len,
                h.ip_id,
                h.tcp_flags,
                h.tcp_seq,
                h.icmp_type,
                h.icmp_code,
                h.extra,
                no_transport=bool(h.flags & abi.HDR_NO_L4),
            )
    fib = hop is Hop.FIB_LOOKUP
    detail = raw[abi.HopEventRaw.detail.offset : abi.HopEventRaw.detail.offset + 32]
    return HopEvent(
        path_id=ev.path_id,
        hop=hop,
        ts_ns=ev.ts_ns,
        cpu=ev.cpu,
        ifindex=ev.ifindex,
        ifname=text(ev.ifname),
        netns=ev.netns,
        length=ev.len,
        verdict=ev.verdict,
        reason=REASONS.name(ev.reason) if hop is Hop.DROP else None,
        table=ev.table,
        out_ifname=text(ev.out_ifname),
        fib_src=address(ev.fib_family, bytes(ev.fib_saddr)) if fib else "",
        fib_dst=address(ev.fib_family, bytes(ev.fib_daddr)) if fib else "",
        fib_lookup=FIB_LOOKUPS.get(ev.phase) if fib else None,
        location=ev.location,
        nf_family=ev.nf_family,
        nf_hook=ev.nf_hook,
        phase=ev.phase,
        route_error=ev.route_error,
        nf_table=text(detail[:16]),
        nf_chain=text(detail[16:]) if hop is not Hop.IPT_TABLE else nf.builtin_chain(ev.nf_hook),
        header=header,
        sampled_by=SampledBy.DROP if ev.flags & abi.EV_BY_DROP else SampledBy.RATE,
    )


def random_record(rng: random.Random) -> bytes:
    raw = abi.HopEventRaw.from_buffer_copy(os.urandom(EVENT_SIZE))
    raw.hop = rng.choice(list(HOPS))
    raw.flags = rng.randrange(4)
    raw.ifname = rng.choice(NAMES)
    raw.out_ifname = rng.choice(NAMES)
    raw.hdr.family = rng.choice((4, 6))
    raw.hdr.flags = rng.choice((0, abi.HDR_TRUNCATED, abi.HDR_NO_L4))
    raw.fib_family = rng.choice((4, 6))
    raw.phase = rng.choice((abi.FIB_ROUTE, abi.FIB_RP_FILTER, 7))
    if rng.random() < 0.3:  # an IPv4-mapped IPv6 address
        raw.hdr.saddr[:12] = [0] * 10 + [0xFF, 0xFF]
    data = bytearray(bytes(raw))
    offset = abi.HopEventRaw.detail.offset
    data[offset : offset + 32] = rng.choice(NAMES).ljust(16, b"\0") + rng.choice(NAMES).ljust(16, b"\0")
    return bytes(data)


def test_every_field_of_random_records() -> None:
    rng = random.Random(12)
    decoder = EventDecoder(REASONS)
    for _ in range(3000):
        raw = random_record(rng)
        assert decoder.decode(raw) == expected(raw)


def test_records_alike_but_for_one_byte_decode_apart() -> None:
    """The decoder reuses what it made of a record's bytes between its time and its header for the
    next record with the same bytes there: a record that differs in any one of those bytes, or only
    in its path id, time or header, still decodes to exactly its own fields."""
    rng = random.Random(5)
    decoder = EventDecoder(REASONS)
    start, end = abi.HopEventRaw.location.offset, abi.HopEventRaw.hdr.offset
    bases = [random_record(rng) for _ in range(20)]
    checked = 0
    for base in bases:
        assert decoder.decode(base) == expected(base)
        for offset in range(start, end):
            variant = bytearray(base)
            variant[offset] ^= 1 << rng.randrange(8)
            if abi.HopEventRaw.from_buffer_copy(variant).hop not in HOPS:
                continue
            assert decoder.decode(bytes(variant)) == expected(bytes(variant)), f"byte {offset} changed"
            checked += 1
        # The same bytes in the middle, another packet around them: its own id, time and header.
        other = bytearray(random_record(rng))
        other[start:end] = base[start:end]
        assert decoder.decode(bytes(other)) == expected(bytes(other))
        assert decoder.decode(base) == expected(base)
    assert checked > 15 * (end - start)


def test_a_flows_packets_on_other_cpus_and_of_other_sizes_share_one_decoding() -> None:
    """The CPU and the length are read per record, so a flow's hop decodes once, whatever its packets' CPU and size."""
    decoder = EventDecoder(REASONS)
    base = abi.HopEventRaw(hop=abi.HOP_IDS["HOP_NETIF_RECEIVE"], ifindex=2, netns=9, ifname=b"eth0")
    for n in range(200):
        base.path_id, base.ts_ns, base.cpu, base.len = n + 1, 1000 * n, n % 64, 60 + n * 7
        raw = bytes(base)
        assert decoder.decode(raw) == expected(raw)
    assert len(decoder._shapes) == 1


def test_a_forwarded_ipv4_first_hop() -> None:
    raw = abi.HopEventRaw(
        path_id=7,
        ts_ns=123,
        hop=abi.HOP_IDS["HOP_FIB_LOOKUP"],
        cpu=1,
        ifindex=2,
        netns=9,
        len=84,
        verdict=-101,
        table=254,
        fib_family=4,
        flags=abi.EV_HEADER,
        ifname=b"eth0",
        out_ifname=b"eth1",
        phase=abi.FIB_RP_FILTER,
    )
    raw.fib_saddr[:4] = [10, 0, 1, 5]
    raw.fib_daddr[:4] = [10, 0, 2, 9]
    raw.hdr.family, raw.hdr.protocol, raw.hdr.sport, raw.hdr.dport = 4, 17, 4242, 53
    raw.hdr.saddr[:4] = [10, 0, 1, 5]
    raw.hdr.daddr[:4] = [10, 0, 2, 9]
    ev = EventDecoder(REASONS).decode(bytes(raw))
    assert (ev.path_id, ev.hop, ev.ts_ns, ev.verdict, ev.table, ev.ifname, ev.out_ifname) == (
        7,
        Hop.FIB_LOOKUP,
        123,
        -101,
        254,
        "eth0",
        "eth1",
    )
    assert (ev.fib_src, ev.fib_dst, ev.fib_lookup) == ("10.0.1.5", "10.0.2.9", FibLookup.RP_FILTER)
    assert ev.header == PacketHeader(4, "10.0.1.5", "10.0.2.9", 17, sport=4242, dport=53)


def test_short_record_and_unknown_hop() -> None:
    decoder = EventDecoder(REASONS)
    with pytest.raises(DecodeError, match=f"hop event of 10 bytes, expected {EVENT_SIZE}"):
        decoder.decode(bytes(10))
    with pytest.raises(DecodeError, match="unknown hop id 999"):
        decoder.decode(bytes(abi.HopEventRaw(hop=999)))
    assert ctypes.sizeof(abi.HopEventRaw) == EVENT_SIZE

"""The hop table is the one place a hop is spelled: everything else is checked against it."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path as FsPath

import pytest

from exporter.loader.libbpf import BpfObject
from exporter.loader.probes import parse_program
from exporter.model import abi, hops
from exporter.model.hops import Hop, Role
from exporter.model.path import FibLookup, HopEvent, PacketHeader, Path
from exporter.model.vocabulary import route_result

REPO = FsPath(__file__).resolve().parents[3]
OBJ = REPO / "exporter" / "bpf" / "pktpath.bpf.o"


def object_btf_enum() -> dict[str, int]:
    obj = BpfObject(str(OBJ))  # opened, not loaded: no privilege needed
    try:
        return dict(obj.btf().enum("hop_id") or [])
    finally:
        obj.close()


def object_program_hops() -> set[str]:
    obj = BpfObject(str(OBJ))
    try:
        return {s.hop for p in obj.programs if (s := parse_program(p.name, p.section)) is not None}
    finally:
        obj.close()


def test_the_c_enum_is_the_tables_order() -> None:
    assert object_btf_enum() == dict(abi.HOP_IDS)
    assert list(hops.BY_ID.values()) == list(Hop)


def test_every_program_of_the_object_belongs_to_a_row_and_every_row_has_its_programs() -> None:
    in_table = {p for spec in hops.TABLE for p in spec.programs}
    assert object_program_hops() == in_table


def test_derived_sets() -> None:
    assert {Hop.DROP, Hop.CONSUME, Hop.DELIVER, Hop.SOCK_QUEUE} == hops.TERMINAL_HOPS
    assert all(hops.SPECS[h].role is Role.TERMINAL for h in hops.TERMINAL_HOPS)
    # Counters and the drop program stay attached whether or not paths are followed.
    assert "kfree_skb" not in hops.PATH_ONLY_PROGRAMS
    assert {"nft_do_chain", "ipt_do_table", "fib_validate_source", "ip_route_input_noref"}.isdisjoint(
        hops.PATH_ONLY_PROGRAMS
    )
    assert {"ip_rcv", "ipv6_rcv", "fib6_table_lookup", "net_dev_queue"} <= set(hops.PATH_ONLY_PROGRAMS)
    assert hops.MODULE_OF == {"nft_do_chain": "nf_tables", "ipt_do_table": "ip_tables"}


def test_the_docs_table_is_generated_from_the_table() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen-hop-table"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


# One wording for route lookups and rp_filter, shared by the shell and the spans.


@pytest.mark.parametrize(
    ("err", "name"),
    [
        (0, "found"),
        (-errno.EAGAIN, "no route"),
        (-errno.ENETUNREACH, "no route"),
        (-errno.EINVAL, "blackhole"),
        (-errno.EHOSTUNREACH, "unreachable"),
        (-errno.EACCES, "prohibit"),
        (-errno.EPERM, "error -1"),
    ],
)
def test_route_results_are_named_by_the_kernels_error(err: int, name: str) -> None:
    assert route_result(err) == name


def rp(verdict: int = 0, out: str = "") -> HopEvent:
    return HopEvent(1, Hop.FIB_LOOKUP, 0, table=254, verdict=verdict, out_ifname=out, fib_lookup=FibLookup.RP_FILTER)


def test_rp_filter_from_its_reverse_lookup() -> None:
    assert hops.rp_filter_phrase(rp(out="eth0"), "eth0") == "PASS (route back via eth0, table main)"
    assert hops.rp_filter_phrase(rp(-errno.EAGAIN), "eth0") == "FAIL (no route back to the source, table main)"
    assert hops.rp_filter_phrase(rp(-errno.EINVAL), "eth0") == "FAIL (blackhole route back to the source, table main)"
    # Through another device: strict mode fails it, loose mode passes it; the lookup cannot tell which.
    assert (
        hops.rp_filter_phrase(rp(out="eth1"), "eth0")
        == "FAIL in strict mode, PASS in loose (route back via eth1, not iif eth0, table main)"
    )


def test_rp_filter_from_fib_validate_source() -> None:
    assert hops.rp_filter_phrase(HopEvent(1, Hop.RP_FILTER, 0, verdict=0), "eth0") == "PASS"
    assert hops.rp_filter_phrase(HopEvent(1, Hop.RP_FILTER, 0, verdict=-errno.EXDEV), "eth0") == "FAIL (EXDEV(-18))"


def test_the_receiving_device_is_the_last_receive_before_the_hop() -> None:
    header = PacketHeader(4, "10.0.0.1", "10.0.0.2", 17)
    events = [
        HopEvent(1, Hop.DEV_QUEUE, 1, ifname="veth0"),
        HopEvent(1, Hop.NETIF_RECEIVE, 2, ifname="eth0"),
        HopEvent(1, Hop.NETIF_RECEIVE, 3, ifname="eth1"),
        rp(),
        HopEvent(1, Hop.NETIF_RECEIVE, 5, ifname="eth2"),
    ]
    path = Path(1, header, events)
    assert hops.receiving_device(path, 3) == "eth1"
    assert hops.receiving_device(path, 1) == ""
    assert hops.is_rp_filter(events[3]) and not hops.is_rp_filter(events[1])

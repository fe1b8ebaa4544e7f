"""The hop table is the one place a hop is spelled: everything else is checked against it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from exporter.loader.libbpf import BpfObject
from exporter.loader.probes import parse_program
from exporter.model import abi, hops
from exporter.model.hops import Hop, Role

REPO = Path(__file__).resolve().parents[3]
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
        hops.PATH_ONLY_PROGRAMS)
    assert {"ip_rcv", "ipv6_rcv", "fib6_table_lookup", "net_dev_queue"} <= set(hops.PATH_ONLY_PROGRAMS)
    assert hops.MODULE_OF == {"nft_do_chain": "nf_tables", "ipt_do_table": "ip_tables"}


def test_the_docs_table_is_generated_from_the_table() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen-hop-table"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

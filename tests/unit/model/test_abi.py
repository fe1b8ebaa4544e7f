"""The Python mirrors of exporter/bpf/pktpath.h match the compiled object's BTF."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from exporter.errors import KernelError
from exporter.loader.engine import default_object_path
from exporter.loader.libbpf import Btf
from exporter.model import abi

OBJ = Path(default_object_path())


@pytest.fixture
def object_btf() -> Btf:
    assert OBJ.exists(), "build the BPF object first: make build"
    return Btf.parse(str(OBJ))


def test_mirrors_match_object(object_btf: Btf) -> None:
    abi.check_against(object_btf)
    size, members = object_btf.struct_layout("drop_key") or (0, [])
    assert size == ctypes.sizeof(abi.DropKey) == 40
    # Slots stay one cache line each (drops.bpf.h).
    assert (object_btf.struct_layout("drop_slot") or (0, []))[0] == ctypes.sizeof(abi.DropSlot) == 64
    assert [m for m, _ in members] == [f[0] for f in abi.DropKey._fields_]


class _Doctored:
    """The real object BTF with some structs or enums replaced."""

    def __init__(
        self,
        real: Btf,
        structs: dict[str, tuple[int, list[tuple[str, int]]] | None] | None = None,
        enums: dict[str, list[tuple[str, int]]] | None = None,
    ) -> None:
        self.real, self.structs, self.enums = real, structs or {}, enums or {}

    def struct_layout(self, name: str) -> tuple[int, list[tuple[str, int]]] | None:
        return self.structs[name] if name in self.structs else self.real.struct_layout(name)

    def enum(self, name: str) -> list[tuple[str, int]] | None:
        return self.enums[name] if name in self.enums else self.real.enum(name)


def test_stat_slots_match_enum(object_btf: Btf) -> None:
    members = dict(object_btf.enum("pktpath_stat") or [])
    assert [members[name] for name in abi.STATS] == list(range(abi.STAT_SLOTS))
    assert members["STAT__MAX"] == abi.STAT_SLOTS
    assert dict(object_btf.enum("hop_id") or []) == abi.HOP_IDS


def test_size_mismatch_names_the_struct(object_btf: Btf) -> None:
    size, members = object_btf.struct_layout("drop_value") or (0, [])
    with pytest.raises(KernelError, match="struct drop_value is 24 bytes in the BPF object, 16 in"):
        abi.check_against(_Doctored(object_btf, structs={"drop_value": (size + 8, members)}))


def test_member_offset_mismatch_names_the_struct(object_btf: Btf) -> None:
    size, members = object_btf.struct_layout("hop_event") or (0, [])
    swapped = [(name, off) for name, off in members]
    swapped[0], swapped[1] = (swapped[1][0], swapped[0][1]), (swapped[0][0], swapped[1][1])
    with pytest.raises(KernelError, match="ABI mismatch: struct hop_event members"):
        abi.check_against(_Doctored(object_btf, structs={"hop_event": (size, swapped)}))


def test_stat_enum_mismatch_is_caught(object_btf: Btf) -> None:
    with pytest.raises(KernelError, match="enum pktpath_stat"):
        abi.check_against(_Doctored(object_btf, enums={"pktpath_stat": [("STAT_DROP_MAP_FULL", 0), ("STAT__MAX", 1)]}))


def test_hop_enum_mismatch_is_caught(object_btf: Btf) -> None:
    hops = dict(object_btf.enum("hop_id") or [])
    hops["HOP_DROP"] = 99
    with pytest.raises(KernelError, match="enum hop_id"):
        abi.check_against(_Doctored(object_btf, enums={"hop_id": list(hops.items())}))


def test_missing_struct_says_rebuild(object_btf: Btf) -> None:
    with pytest.raises(KernelError, match="lacks struct drop_key: rebuild"):
        abi.check_against(_Doctored(object_btf, structs={"drop_key": None}))


def test_defines_match_the_header() -> None:
    """#defines are not in BTF: read them from the header the object was built from."""
    import re

    header = (OBJ.parent / "pktpath.h").read_text()
    defines = {m[1]: int(m[2], 0) for m in re.finditer(r"#define (\w+) (0x[0-9a-fA-F]+|\d+)", header)}
    for name in (
        "EV_HEADER",
        "EV_BY_DROP",
        "FILTER_SRC",
        "FILTER_DST",
        "FILTER_PROTO",
        "FILTER_PORT",
        "FILTER_IFACE",
        "MAX_PORT_RANGES",
        "FILTER_GENERATIONS",
        "MAX_FILTER_CIDRS",
        "MAX_FILTER_IFACES",
        "DROP_KEY_TRUNCATED",
        "HDR_TRUNCATED",
        "HDR_NO_L4",
        "FIB_ROUTE",
        "FIB_RP_FILTER",
        "DROP_EVIDENCE_ERRNO",
        "DROP_EVIDENCE_IN_DEV",
        "DROP_EVIDENCE_FORWARDING",
    ):
        assert defines[name] == getattr(abi, name), name


def test_filter_capacities_match_the_compiled_maps() -> None:
    """The limits `validate` enforces (through abi.py) are the ones the object's maps were built with:
    each filter map holds FILTER_GENERATIONS full generations, path_config one entry per generation,
    and path_config.ports MAX_PORT_RANGES ranges (its size in BTF)."""
    from exporter.loader.libbpf import BpfObject

    obj = BpfObject(str(OBJ))  # opened, not loaded: no privilege needed
    try:
        sizes = {m.name: (m.max_entries, m.key_size) for m in obj.maps}
        btf = obj.btf()
        assert sizes["filter_src"] == (abi.FILTER_GENERATIONS * abi.MAX_FILTER_CIDRS, ctypes.sizeof(abi.LpmKey))
        assert sizes["filter_dst"] == (abi.FILTER_GENERATIONS * abi.MAX_FILTER_CIDRS, ctypes.sizeof(abi.LpmKey))
        assert sizes["filter_ifaces"] == (abi.FILTER_GENERATIONS * abi.MAX_FILTER_IFACES, ctypes.sizeof(abi.IfaceKey))
        assert sizes["path_config"][0] == abi.FILTER_GENERATIONS
        assert sizes["path_generation"] == (1, 4)
        port_range = ctypes.sizeof(abi.PortRange)
        members = dict((btf.struct_layout("path_config") or (0, []))[1])
        assert members["protocols"] - members["ports"] == abi.MAX_PORT_RANGES * port_range
    finally:
        obj.close()


def test_config_limits_are_the_kernel_capacities() -> None:
    from exporter.config import SECTIONS

    limits = {f"{sec.name}.{key.name}": key.max_items for sec in SECTIONS for key in sec.keys if key.max_items}
    assert limits == {
        "filter.src": abi.MAX_FILTER_CIDRS,
        "filter.dst": abi.MAX_FILTER_CIDRS,
        "filter.ports": abi.MAX_PORT_RANGES,
        "filter.interfaces": abi.MAX_FILTER_IFACES,
    }

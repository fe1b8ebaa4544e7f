"""The Python mirrors of exporter/bpf/pktpath.h match the compiled object's BTF."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from exporter.decoders import abi
from exporter.errors import KernelError
from exporter.loader.engine import default_object_path
from exporter.loader.libbpf import Btf

OBJ = Path(default_object_path())


@pytest.fixture
def object_btf() -> Btf:
    assert OBJ.exists(), "build the BPF object first: make build"
    return Btf.parse(str(OBJ))


def test_mirrors_match_object(object_btf: Btf) -> None:
    abi.check_against(object_btf)
    size, members = object_btf.struct_layout("drop_key") or (0, [])
    assert size == ctypes.sizeof(abi.DropKey) == 32
    assert [m for m, _ in members] == [f[0] for f in abi.DropKey._fields_]


def test_stat_slots_match_enum(object_btf: Btf) -> None:
    members = dict(object_btf.enum("pktpath_stat") or [])
    assert members["STAT_DROP_MAP_FULL"] == abi.STAT_DROP_MAP_FULL
    assert members["STAT__MAX"] == abi.STAT_SLOTS


class _Layouts:
    def __init__(self, layouts: dict[str, tuple[int, list[tuple[str, int]]]]) -> None:
        self.layouts = layouts

    def struct_layout(self, name: str) -> tuple[int, list[tuple[str, int]]] | None:
        return self.layouts.get(name)

    def enum(self, name: str) -> list[tuple[str, int]] | None:
        return [("STAT_DROP_MAP_FULL", 0), ("STAT__MAX", 2)] if name == "pktpath_stat" else None


def test_size_mismatch_names_the_struct(object_btf: Btf) -> None:
    real = {n: object_btf.struct_layout(n) for n in ("drop_key", "drop_value")}
    size, members = real["drop_value"] or (0, [])
    wrong = _Layouts({"drop_key": real["drop_key"], "drop_value": (size + 8, members)})  # type: ignore[dict-item]
    with pytest.raises(KernelError, match="struct drop_value is 24 bytes in the BPF object, 16 in"):
        abi.check_against(wrong)


def test_stat_enum_mismatch_is_caught(object_btf: Btf) -> None:
    layouts = {n: object_btf.struct_layout(n) for n in ("drop_key", "drop_value")}
    with pytest.raises(KernelError, match="enum pktpath_stat"):
        abi.check_against(_Layouts(layouts))  # type: ignore[arg-type]  # its enum claims 2 slots


def test_missing_struct_says_rebuild() -> None:
    with pytest.raises(KernelError, match="lacks struct drop_key: rebuild"):
        abi.check_against(_Layouts({}))

"""What the engine decides from the kernel's BTF before loading: programs that call a helper the
kernel lacks, hooks on module functions without module BTF, and the constants set in .rodata.
The kernel here is a real BTF file written for the test (what 5.10 has and lacks), read by libbpf."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.loader import libbpf
from exporter.loader.engine import Engine, EngineOptions, default_object_path, window_object_path
from exporter.loader.host import Host

BTF_KIND_STRUCT, BTF_KIND_ENUM = 4, 6


def write_btf(path: Path, enums: dict[str, dict[str, int]], structs: tuple[str, ...] = ()) -> None:
    """A minimal BTF blob (include/uapi/linux/btf.h): named enums and empty structs."""
    strings = b"\0"

    def name(text: str) -> int:
        nonlocal strings
        off = len(strings)
        strings += text.encode() + b"\0"
        return off

    types = b""
    for enum, members in enums.items():
        types += struct.pack("<III", name(enum), BTF_KIND_ENUM << 24 | len(members), 4)
        for member, value in members.items():
            types += struct.pack("<Ii", name(member), value)
    for st in structs:
        types += struct.pack("<III", name(st), BTF_KIND_STRUCT << 24, 0)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    path.write_bytes(header + types + strings)


@pytest.fixture
def kernel_5_10(tmp_path: Path) -> Host:
    """5.10 as the engine sees it: helpers end before bpf_get_func_ret (#184), modules loaded
    without BTF, xt_table in vmlinux's BTF but none of nf_tables' types."""
    sys_root, proc_root = tmp_path / "sys", tmp_path / "proc"
    (sys_root / "kernel/btf").mkdir(parents=True)
    write_btf(
        sys_root / "kernel/btf/vmlinux",
        {"bpf_func_id": {"BPF_FUNC_unspec": 0, "__BPF_FUNC_MAX_ID": 156}},
        structs=("xt_table", "nf_hook_state"),
    )
    for module in ("nf_tables", "ip_tables"):
        (sys_root / "module" / module).mkdir(parents=True)
    (proc_root / "sys/kernel").mkdir(parents=True)
    (proc_root / "sys/kernel/osrelease").write_text("5.10.0-46-amd64\n")
    return Host(sys_root=str(sys_root), proc_root=str(proc_root))


@pytest.fixture
def progs() -> Iterator[dict[str, libbpf.Program]]:
    """Every program the agent may load: its own object's and the sampling windows' (window.bpf.o)."""
    objs = [libbpf.BpfObject(path) for path in (default_object_path(), window_object_path(default_object_path()))]
    yield {p.name: p for obj in objs for p in obj.programs}
    for obj in objs:
        obj.close()


def test_programs_calling_a_missing_helper_are_named_before_the_load(
    kernel_5_10: Host, progs: dict[str, libbpf.Program]
) -> None:
    engine = Engine(EngineOptions(), host=kernel_5_10)
    assert (
        engine._missing_helper(progs["nf_hook_slow__fexit"])
        == "needs BPF helper bpf_get_func_ret (5.17+), which this kernel lacks"
    )
    assert engine._missing_helper(progs["fib_validate_source__fexit"]).startswith("needs BPF helper")
    # The sampling windows' kprobe.multi dispatchers find their hook by its attach cookie (5.15+).
    assert (
        engine._missing_helper(progs["window_call"])
        == "needs BPF helper bpf_get_attach_cookie (5.15+), which this kernel lacks"
    )
    # Every fexit reads its return value that way; nothing else needs a helper 5.10 lacks.
    refused = {name for name, prog in progs.items() if engine._missing_helper(prog)}
    fexits = {name for name, prog in progs.items() if prog.section.startswith("fexit/")}
    assert refused == fexits | {"window_call", "window_return"}


def test_the_running_kernel_has_every_helper(progs: dict[str, libbpf.Program]) -> None:
    engine = Engine(EngineOptions())
    assert not [name for name, prog in progs.items() if engine._missing_helper(prog)]


def test_module_hooks_without_module_btf(kernel_5_10: Host) -> None:
    from exporter.loader.probes import parse_program

    engine = Engine(EngineOptions(), host=kernel_5_10)
    nft_fentry = parse_program("nft_do_chain__fentry", "fentry/nft_do_chain")
    nft_kprobe = parse_program("nft_do_chain__kprobe", "kprobe/nft_do_chain")
    ipt_kprobe = parse_program("ipt_do_table__kprobe", "kprobe/ipt_do_table")
    assert nft_fentry and nft_kprobe and ipt_kprobe
    assert (
        engine._missing_target(nft_fentry)
        == "module nf_tables has no BTF (module BTF is 5.11+): fentry needs its function's BTF"
    )
    assert engine._missing_target(nft_kprobe) == (
        "module nf_tables has no BTF (module BTF is 5.11+), and the kernel's lacks struct nft_pktinfo, "
        "struct nft_chain, struct nft_table, which this hook reads"
    )
    assert engine._missing_target(ipt_kprobe) == ""  # struct xt_table is in vmlinux's BTF
    # Not loaded at all: attached when it is.
    (Path(kernel_5_10.sys_root) / "module/nf_tables").rmdir()
    assert engine._missing_target(nft_kprobe) == "module nf_tables not loaded (attached when it is)"


def test_ipt_do_table_argument_order(kernel_5_10: Host) -> None:
    # No BTF tells on 5.10: the release does (the order changed in 5.16).
    assert Engine(EngineOptions(), host=kernel_5_10).kernel_constants() == {"ipt_do_table_skb_first": 1}
    (Path(kernel_5_10.proc_root) / "sys/kernel/osrelease").write_text("5.16.0\n")
    assert Engine(EngineOptions(), host=kernel_5_10).kernel_constants() == {"ipt_do_table_skb_first": 0}
    # Not loaded: nothing to decide yet (attach_late() decides when it is).
    (Path(kernel_5_10.sys_root) / "module/ip_tables").rmdir()
    assert Engine(EngineOptions(), host=kernel_5_10).kernel_constants() == {}


def test_constants_reach_the_objects_rodata() -> None:
    obj = libbpf.BpfObject(default_object_path())
    try:
        assert obj.set_constant("ipt_do_table_skb_first", 1)
        assert not obj.set_constant("no_such_constant", 1)
    finally:
        obj.close()

"""Drop reason names come from BTF: the running kernel's, and hand-built blobs for the edge cases."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from exporter.decoders.drop_reasons import DropReasons, reason_label
from exporter.kernel.facade import drop_reasons_from_btf
from exporter.loader.libbpf import Btf

VMLINUX = Path("/sys/kernel/btf/vmlinux")

BTF_KIND_ENUM, BTF_KIND_ENUM64 = 6, 19


def raw_btf(enums: list[tuple[str, int, list[tuple[str, int]]]], base_strings: int = 0) -> bytes:
    """A minimal raw BTF blob holding the given enums: (name, kind, members).  `base_strings`: the
    length of a base BTF's string section, for a split blob (a module's), whose string offsets
    continue the base's."""
    strings = b"\0"
    offsets: dict[str, int] = {}

    def off(s: str) -> int:
        nonlocal strings
        if s not in offsets:
            offsets[s] = base_strings + len(strings)
            strings += s.encode() + b"\0"
        return offsets[s]

    types = b""
    for name, kind, members in enums:
        size = 8 if kind == BTF_KIND_ENUM64 else 4
        types += struct.pack("<III", off(name), (kind << 24) | len(members), size)
        for mname, value in members:
            if kind == BTF_KIND_ENUM64:
                types += struct.pack("<III", off(mname), value & 0xFFFFFFFF, value >> 32)
            else:
                types += struct.pack("<Ii", off(mname), value if value < 2**31 else value - 2**32)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def test_label_strips_prefixes() -> None:
    assert reason_label("SKB_DROP_REASON_NETFILTER_DROP") == "NETFILTER_DROP"
    assert reason_label("SKB_CONSUMED") == "CONSUMED"
    assert reason_label("OVS_DROP_LAST_ACTION") == "OVS_DROP_LAST_ACTION"


@pytest.mark.skipif(not VMLINUX.exists(), reason="kernel built without CONFIG_DEBUG_INFO_BTF")
def test_running_kernel_names_match_its_btf() -> None:
    with Btf.parse(str(VMLINUX)) as btf:
        members = btf.enum("skb_drop_reason")
        assert members is not None
        reasons = drop_reasons_from_btf(btf)
    by_name = {reason_label(n): v for n, v in members}
    # The reasons the kernel tests provoke must exist, each decoding back to its own number.
    for name in ("NETFILTER_DROP", "IP_RPFILTER", "IP_INNOROUTES", "IP_INADDRERRORS", "NO_SOCKET", "NOT_SPECIFIED"):
        assert reasons.name(by_name[name]) == name
    assert not any(n.startswith("SKB_DROP_REASON_") for n in reasons.known().values())


@pytest.mark.skipif(not VMLINUX.exists(), reason="kernel built without CONFIG_DEBUG_INFO_BTF")
def test_module_reasons_are_found_after_the_kernel_btf_was_freed(tmp_path: Path) -> None:
    """The agent frees the kernel BTF after start-up; a subsystem reason seen later still finds its
    module's name, its split BTF read against a kernel BTF parsed again then."""
    with Btf.parse(str(VMLINUX)) as probe:
        subsystems = dict(probe.enum("skb_drop_reason_subsys") or [])
    if "SKB_DROP_REASON_SUBSYS_OPENVSWITCH" not in subsystems:
        pytest.skip("this kernel has no openvswitch drop reason subsystem (before 6.4)")
    base = subsystems["SKB_DROP_REASON_SUBSYS_OPENVSWITCH"] << 16
    base_strings = struct.unpack_from("<I", VMLINUX.read_bytes()[:24], 20)[0]  # btf_header.str_len
    modules = tmp_path / "btf"
    modules.mkdir()
    (modules / "vmlinux").write_bytes(b"")  # skipped by name, as in /sys/kernel/btf
    (modules / "openvswitch").write_bytes(
        raw_btf(
            [("ovs_drop_reason", BTF_KIND_ENUM, [("__OVS_DROP_REASON", base), ("OVS_DROP_LAST_ACTION", base + 1)])],
            base_strings,
        )
    )
    parsed: list[Btf] = []

    def kernel_btf() -> Btf:
        parsed.append(Btf.parse(str(VMLINUX)))
        return parsed[-1]

    btf = Btf.parse(str(VMLINUX))
    reasons = drop_reasons_from_btf(btf, str(modules), base=kernel_btf)
    btf.close()  # what the agent does once it serves
    try:
        assert reasons.name(base + 1) == "OVS_DROP_LAST_ACTION"
        assert len(parsed) == 1
    finally:
        for b in parsed:
            b.close()


def test_hand_built_btf_with_subsystems_and_enum64(tmp_path: Path) -> None:
    blob = tmp_path / "btf.raw"
    blob.write_bytes(
        raw_btf(
            [
                (
                    "skb_drop_reason",
                    BTF_KIND_ENUM,
                    [
                        ("SKB_NOT_DROPPED_YET", 0),
                        ("SKB_CONSUMED", 1),
                        ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
                        ("SKB_DROP_REASON_FOO", 3),
                        ("SKB_DROP_REASON_MAX", 4),
                    ],
                ),
                (
                    "skb_drop_reason_subsys",
                    BTF_KIND_ENUM,
                    [
                        ("SKB_DROP_REASON_SUBSYS_CORE", 0),
                        ("SKB_DROP_REASON_SUBSYS_OPENVSWITCH", 2),
                        ("SKB_DROP_REASON_SUBSYS_NUM", 3),
                    ],
                ),
                ("big", BTF_KIND_ENUM64, [("HUGE", 1 << 40)]),
            ]
        )
    )
    with Btf.parse(str(blob)) as btf:
        assert btf.enum("big") == [("HUGE", 1 << 40)]
        assert btf.enum("absent") is None
        ovs_module = [[("__OVS_DROP_REASON", 0x20000), ("OVS_DROP_LAST_ACTION", 0x20001)]]
        reasons = DropReasons(
            btf.enum("skb_drop_reason"), btf.enum("skb_drop_reason_subsys"), module_enums=lambda: ovs_module
        )
    assert reasons.name(3) == "FOO"
    assert reasons.name(4) == "UNKNOWN_4"  # the _MAX sentinel is not a reason
    assert reasons.name(0x20001) == "OVS_DROP_LAST_ACTION"  # found in the module's enum
    assert reasons.name(0x20007) == "OPENVSWITCH_7"  # subsystem known, code not
    assert reasons.name(0x50001) == "SUBSYS_5_1"


def test_module_btf_is_read_once_and_only_when_needed() -> None:
    calls = []

    def modules() -> list[list[tuple[str, int]]]:
        calls.append(1)
        return []

    reasons = DropReasons(
        [("SKB_DROP_REASON_NOT_SPECIFIED", 2)], [("SKB_DROP_REASON_SUBSYS_OPENVSWITCH", 2)], module_enums=modules
    )
    assert reasons.name(2) == "NOT_SPECIFIED"
    assert calls == []
    reasons.name(0x20001)
    reasons.name(0x20002)
    assert calls == [1]


def test_kernel_without_reasons_says_unknown() -> None:
    assert DropReasons(None).name(0) == "UNKNOWN"

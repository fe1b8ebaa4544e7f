"""Drops located where the kernel gives no reason (before 5.17): call sites named from a real
kallsyms file, bounded labels, and the reasons derived from call site and evidence."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.decoders.counters import DropCount
from exporter.decoders.drop_locations import SITES, DropLocations, function_label
from exporter.decoders.drop_reasons import DropReasons
from exporter.decoders.interfaces import InterfaceResolver
from exporter.decoders.symbols import KernelSymbols
from exporter.metrics.collector import BuildInfo, KernelReadings, PktpathCollector
from exporter.model.abi import DROP_EVIDENCE_FORWARDING, DROP_EVIDENCE_IN_DEV

# Addresses as Debian 11's 5.10.0-46 lays them out (one boot's KASLR slide).
KALLSYMS = """\
ffffffff9b309830 T kfree_skb
ffffffff9b3aec00 T nf_hook_slow
ffffffff9b3aecb0 T nf_hook_slow_list
ffffffff9b3b1a30 t ip_error
ffffffff9b3b1b40 t ipv4_dst_check
ffffffff9b3b8440 t ip_rcv_finish_core.constprop.0
ffffffff9b3b88a0 t ip_rcv_core
ffffffff9b3f8360 T __udp4_lib_rcv
ffffffff9b3f93d0 T udp_rcv
ffffffff9b5079a2 t ip_rcv_finish_core.constprop.0.cold
ffffffff9b5079f0 t ip_route_input_slow.cold
ffffffff9c000000 d some_data
"""
NF_HOOK_SLOW_DROP = 0xFFFFFFFF9B3AEC93  # nf_hook_slow+0x93: its kfree_skb call's return address
IP_ERROR_DROP = 0xFFFFFFFF9B3B1AAD
IP_RCV_FINISH_CORE_DROP = 0xFFFFFFFF9B3B864E
COLD_PART = 0xFFFFFFFF9B5079B0
UDP_NO_SOCKET = 0xFFFFFFFF9B3F8D03
NOT_FORWARDING = DROP_EVIDENCE_IN_DEV
FORWARDING = DROP_EVIDENCE_IN_DEV | DROP_EVIDENCE_FORWARDING


@pytest.fixture
def kallsyms(tmp_path: Path) -> KernelSymbols:
    (tmp_path / "kallsyms").write_text(KALLSYMS)
    (tmp_path / "modules").write_text("veth 32768 0 - Live 0x0000000000000000\n")
    return KernelSymbols(str(tmp_path / "kallsyms"), str(tmp_path / "modules"))


def test_compiler_suffixes_name_the_source_function() -> None:
    assert function_label("ip_rcv_finish_core.constprop.0") == "ip_rcv_finish_core"
    assert function_label("ip_rcv_finish_core.constprop.0.cold") == "ip_rcv_finish_core"
    assert function_label("tcp_v4_rcv.isra.0") == "tcp_v4_rcv"
    assert function_label("nf_hook_slow") == "nf_hook_slow"


def test_call_sites_are_named_by_function(kallsyms: KernelSymbols) -> None:
    loc = DropLocations(kallsyms)
    assert loc.label(NF_HOOK_SLOW_DROP) == "nf_hook_slow"
    assert loc.label(IP_RCV_FINISH_CORE_DROP) == "ip_rcv_finish_core"
    assert loc.label(COLD_PART) == "ip_rcv_finish_core"  # the .cold part is the same function
    assert loc.label(0x1000) == "unknown"  # below every symbol


@pytest.mark.parametrize(
    ("address", "evidence", "reason"),
    [
        (NF_HOOK_SLOW_DROP, 0, "NETFILTER_DROP"),
        (IP_ERROR_DROP, errno.ENETUNREACH | FORWARDING, "IP_INNOROUTES"),
        (IP_ERROR_DROP, errno.ENETUNREACH | NOT_FORWARDING, "IP_INNOROUTES"),
        (IP_ERROR_DROP, errno.EHOSTUNREACH | NOT_FORWARDING, "IP_INADDRERRORS"),
        (IP_ERROR_DROP, errno.EHOSTUNREACH | FORWARDING, "NOT_SPECIFIED"),  # an `unreachable` route
        (IP_ERROR_DROP, errno.EINVAL | FORWARDING, "NOT_SPECIFIED"),  # blackhole
        (IP_ERROR_DROP, errno.EACCES | FORWARDING, "NOT_SPECIFIED"),  # prohibit
        (IP_ERROR_DROP, errno.ENETUNREACH, "NOT_SPECIFIED"),  # no in_device: "IP on this device is disabled"
        (IP_ERROR_DROP, 0, "UNKNOWN"),  # no error route seen: nothing to decide on
        (IP_RCV_FINISH_CORE_DROP, errno.EXDEV, "IP_RPFILTER"),
        (IP_RCV_FINISH_CORE_DROP, 0, "UNKNOWN"),  # options, martians, L2 multicast: not told apart
        (UDP_NO_SOCKET, 0, "UNKNOWN"),  # no socket and malformed datagrams share the function
    ],
)
def test_reasons_derived_from_call_site_and_evidence(
    kallsyms: KernelSymbols, address: int, evidence: int, reason: str
) -> None:
    assert DropLocations(kallsyms).reason(address, evidence) == reason


def test_every_site_explains_itself() -> None:
    assert set(SITES) == {"nf_hook_slow", "ip_error", "ip_rcv_finish_core"}
    assert all(len(site.why) > 80 for site in SITES.values())


def test_labels_beyond_the_limit_are_other_and_counted_once(kallsyms: KernelSymbols) -> None:
    loc = DropLocations(kallsyms, limit=2)
    assert loc.label(NF_HOOK_SLOW_DROP) == "nf_hook_slow"
    assert loc.label(IP_ERROR_DROP) == "ip_error"
    assert loc.label(UDP_NO_SOCKET) == "other"
    assert loc.label(UDP_NO_SOCKET + 4) == "other"  # same function: not counted again
    assert loc.label(IP_RCV_FINISH_CORE_DROP) == "other"
    assert loc.overflow == 2
    assert loc.label(NF_HOOK_SLOW_DROP + 1) == "nf_hook_slow"  # labelled functions keep their label
    # The reason comes from the real function, whatever its label.
    assert loc.reason(IP_RCV_FINISH_CORE_DROP, errno.EXDEV) == "IP_RPFILTER"


def test_a_module_loaded_later_is_read_again(tmp_path: Path, kallsyms: KernelSymbols) -> None:
    loc = DropLocations(kallsyms)
    assert loc.label(NF_HOOK_SLOW_DROP) == "nf_hook_slow"  # kallsyms read, with veth loaded
    (tmp_path / "kallsyms").write_text(KALLSYMS + "ffffffffc0a01000 t nft_do_chain\t[nf_tables]\n")
    (tmp_path / "modules").write_text("nf_tables 266240 0 - Live 0x0000000000000000\n")
    assert loc.label(0xFFFFFFFFC0A01234) == "nft_do_chain"


def test_hidden_kallsyms_give_unknown(tmp_path: Path) -> None:
    (tmp_path / "kallsyms").write_text(
        "".join(f"0000000000000000 T {name}\n" for name in ("kfree_skb", "nf_hook_slow"))
    )
    (tmp_path / "modules").write_text("")
    loc = DropLocations(KernelSymbols(str(tmp_path / "kallsyms"), str(tmp_path / "modules")))
    assert loc.label(NF_HOOK_SLOW_DROP) == "unknown"
    assert loc.reason(NF_HOOK_SLOW_DROP, 0) == "UNKNOWN"


def test_reasons_use_locations_only_where_the_kernel_names_none(kallsyms: KernelSymbols) -> None:
    old = DropReasons(None, locations=DropLocations(kallsyms))
    assert old.at(errno.EXDEV, IP_RCV_FINISH_CORE_DROP) == "IP_RPFILTER"
    assert old.name(7) == "UNKNOWN"
    new = DropReasons([("SKB_DROP_REASON_NETFILTER_DROP", 12)], locations=DropLocations(kallsyms))
    assert new.locations is None
    assert new.at(12, NF_HOOK_SLOW_DROP) == "NETFILTER_DROP"


def test_counters_carry_location_only_without_reasons(kallsyms: KernelSymbols) -> None:
    def collector(reasons: DropReasons, counts: list[DropCount]) -> CollectorRegistry:
        reg = CollectorRegistry()
        reg.register(
            PktpathCollector(
                lambda: KernelReadings(counts),
                reasons,
                InterfaceResolver(lister=lambda _p: {}),
                lambda: [],
                BuildInfo("v", "k", "e"),
            )
        )
        return reg

    old = DropReasons(None, locations=DropLocations(kallsyms, limit=1))
    reg = collector(
        old,
        [
            DropCount("eth0", 0, 2, 1, 0x0800, 17, 5, 640, location=NF_HOOK_SLOW_DROP),
            DropCount("eth0", 0, 2, 1, 0x0800, 17, 3, 300, location=NF_HOOK_SLOW_DROP + 0x10),  # another call site
            DropCount("eth0", errno.EXDEV, 2, 1, 0x0800, 17, 2, 200, location=IP_RCV_FINISH_CORE_DROP),
        ],
    )
    v = reg.get_sample_value
    assert (
        v(
            "pktpath_drops_total",
            {"reason": "NETFILTER_DROP", "interface": "eth0", "protocol": "udp", "location": "nf_hook_slow"},
        )
        == 8
    )
    assert (
        v("pktpath_drops_total", {"reason": "IP_RPFILTER", "interface": "eth0", "protocol": "udp", "location": "other"})
        == 2
    )
    assert v("pktpath_drop_location_overflow_total") == 1

    new = DropReasons([("SKB_DROP_REASON_NETFILTER_DROP", 12)])
    reg = collector(new, [DropCount("eth0", 12, 2, 1, 0x0800, 17, 5, 640)])
    assert (
        reg.get_sample_value(
            "pktpath_drops_total", {"reason": "NETFILTER_DROP", "interface": "eth0", "protocol": "udp"}
        )
        == 5
    )
    assert reg.get_sample_value("pktpath_drop_location_overflow_total") is None

"""Netfilter names, route lookup results in both kernel conventions, and the shell's lines for them."""

from __future__ import annotations

import errno

from exporter.decoders.drop_reasons import DropReasons
from exporter.decoders.route_results import RouteResults
from exporter.interactive.render import hop_line
from exporter.model.hops import ShellContext
from exporter.model.path import Hop, HopEvent, PacketHeader, Path
from exporter.model.vocabulary import nf_family_name as family_name
from exporter.model.vocabulary import nf_hook_name as hook_name
from exporter.model.vocabulary import nf_verdict_name as verdict_name

REASONS = DropReasons(
    [("SKB_DROP_REASON_IP_INNOROUTES", 88), ("SKB_DROP_REASON_IP_RPFILTER", 16), ("SKB_DROP_REASON_PKT_TOO_SMALL", 9)]
)


def test_names() -> None:
    assert (family_name(2), family_name(10), family_name(1)) == ("ipv4", "ipv6", "inet")
    assert [hook_name(n) for n in range(5)] == ["prerouting", "input", "forward", "output", "postrouting"]
    assert (verdict_name(0), verdict_name(1), verdict_name(2)) == ("drop", "accept", "stolen")


def test_route_results_errno_convention() -> None:
    r = RouteResults(returns_reason=False, reasons=REASONS)
    assert r.label(0) == "found"
    assert r.label(-errno.ENETUNREACH) == "no_route"
    assert r.label(-errno.EHOSTUNREACH) == "forwarding_disabled"
    assert r.label(-errno.EXDEV) == "rp_filter"
    assert r.label(-errno.EINVAL) == "martian"
    assert r.label(-errno.ENOMEM) == "enomem"


def test_route_results_drop_reason_convention() -> None:
    r = RouteResults(returns_reason=True, reasons=REASONS)
    assert r.label(0) == "found"
    assert r.label(88) == "no_route"
    assert r.label(16) == "rp_filter"
    assert r.label(9) == "pkt_too_small"


HDR = PacketHeader(4, "10.0.0.1", "10.0.1.2", 17, 4242, 53)


def line(ev: HopEvent) -> str:
    path = Path(1, HDR, [HopEvent(1, Hop.NETIF_RECEIVE, 1, header=HDR), ev])
    return hop_line(path, 1, ShellContext(route_label=RouteResults(False, REASONS).label))


def test_shell_lines_in_the_original_words() -> None:
    assert (
        line(HopEvent(1, Hop.NF_HOOK, 2, ifname="eth0", nf_family=2, nf_hook=0))
        == "Will check NFPROTO_IPV4(2), NF_INET_PRE_ROUTING(0), In_intf:eth0, Out_intf:unknown"
    )
    assert (
        line(HopEvent(1, Hop.NF_HOOK, 3, nf_family=2, nf_hook=1, phase=1, verdict=1))
        == "NFPROTO_IPV4(2), NF_INET_LOCAL_IN(1), check done, PASS"
    )
    assert line(HopEvent(1, Hop.NF_HOOK, 3, nf_family=2, nf_hook=1, phase=1, verdict=-1)).endswith("DROP")
    chain = HopEvent(
        1, Hop.NF_CHAIN, 4, nf_family=2, nf_hook=1, phase=1, verdict=1, nf_table="filter", nf_chain="INPUT"
    )
    assert line(chain) == "filter/INPUT, NFPROTO_IPV4(2), NF_INET_LOCAL_IN(1), check done, NF_ACCEPT(1)"
    legacy = HopEvent(
        1, Hop.IPT_TABLE, 4, nf_family=2, nf_hook=1, phase=1, verdict=0, nf_table="filter", nf_chain="INPUT"
    )
    assert line(legacy) == "filter/INPUT, NFPROTO_IPV4(2), NF_INET_LOCAL_IN(1), check done, NF_DROP(0)"
    assert (
        line(HopEvent(1, Hop.RP_FILTER, 5, ifname="eth0", verdict=0))
        == "rp_filter check: src(10.0.0.1), iif(eth0), PASS"
    )
    assert (
        line(HopEvent(1, Hop.RP_FILTER, 5, ifname="eth0", verdict=-errno.EXDEV))
        == "rp_filter check: src(10.0.0.1), iif(eth0), FAIL (EXDEV(-18))"
    )
    assert (
        line(HopEvent(1, Hop.ROUTE_INPUT, 6, ifname="eth0", verdict=-errno.ENETUNREACH))
        == "ip route lookup: dst(10.0.1.2), src(10.0.0.1), iif(eth0), no route (no_route)"
    )
    assert line(HopEvent(1, Hop.ROUTE_INPUT, 6, ifname="eth0", verdict=0)).endswith("iif(eth0), found route")


def test_convention_is_read_from_the_running_kernels_btf() -> None:
    from pathlib import Path as FsPath

    from exporter.decoders.route_results import returns_drop_reason
    from exporter.loader.libbpf import Btf

    vmlinux = FsPath("/sys/kernel/btf/vmlinux")
    with Btf.parse(str(vmlinux)) as btf:
        kind_name = btf.func_return("ip_route_input_noref")
        assert kind_name is not None
        # Whatever this kernel does, the answer must follow its BTF, not a version guess.
        assert returns_drop_reason(btf, "ip_route_input_noref") == (kind_name[1] == "skb_drop_reason")
        assert btf.func_return("no_such_function_anywhere") is None


def test_legacy_tables_are_named_after_the_hooks_builtin_chain() -> None:
    """ipt_do_table events carry the table name only; the chain is the hook's built-in one."""
    import ctypes

    from exporter.decoders.events import EventDecoder
    from exporter.model import abi

    raw = abi.HopEventRaw(
        hop=abi.HOP_IDS["HOP_IPT_TABLE"], nf_family=2, nf_hook=2, phase=1, verdict=0, detail=b"filter"
    )
    ev = EventDecoder(REASONS).decode(bytes(raw)[: ctypes.sizeof(raw)])
    assert (ev.hop, ev.nf_table, ev.nf_chain) == (Hop.IPT_TABLE, "filter", "FORWARD")
    raw.nf_hook = 4
    raw.detail = b"mangle"
    ev = EventDecoder(REASONS).decode(bytes(raw))
    assert (ev.nf_table, ev.nf_chain) == ("mangle", "POSTROUTING")

"""One wording for route lookups and rp_filter, shared by the shell and the spans."""

from __future__ import annotations

import errno

import pytest

from exporter.paths import describe
from exporter.paths.model import FibLookup, Hop, HopEvent, PacketHeader, Path, route_result


@pytest.mark.parametrize(("err", "name"), [(0, "found"), (-errno.EAGAIN, "no route"), (-errno.ENETUNREACH, "no route"),
                                           (-errno.EINVAL, "blackhole"), (-errno.EHOSTUNREACH, "unreachable"),
                                           (-errno.EACCES, "prohibit"), (-errno.EPERM, "error -1")])
def test_route_results_are_named_by_the_kernels_error(err: int, name: str) -> None:
    assert route_result(err) == name


def rp(verdict: int = 0, out: str = "") -> HopEvent:
    return HopEvent(1, Hop.FIB_LOOKUP, 0, table=254, verdict=verdict, out_ifname=out, fib_lookup=FibLookup.RP_FILTER)


def test_rp_filter_from_its_reverse_lookup() -> None:
    assert describe.rp_filter_phrase(rp(out="eth0"), "eth0") == "PASS (route back via eth0, table main)"
    assert describe.rp_filter_phrase(rp(-errno.EAGAIN), "eth0") == "FAIL (no route back to the source, table main)"
    assert describe.rp_filter_phrase(rp(-errno.EINVAL), "eth0") == \
        "FAIL (blackhole route back to the source, table main)"
    # Through another device: strict mode fails it, loose mode passes it; the lookup cannot tell which.
    assert describe.rp_filter_phrase(rp(out="eth1"), "eth0") == \
        "FAIL in strict mode, PASS in loose (route back via eth1, not iif eth0, table main)"


def test_rp_filter_from_fib_validate_source() -> None:
    assert describe.rp_filter_phrase(HopEvent(1, Hop.RP_FILTER, 0, verdict=0), "eth0") == "PASS"
    assert describe.rp_filter_phrase(HopEvent(1, Hop.RP_FILTER, 0, verdict=-errno.EXDEV), "eth0") == \
        "FAIL (EXDEV(-18))"


def test_the_receiving_device_is_the_last_receive_before_the_hop() -> None:
    header = PacketHeader(4, "10.0.0.1", "10.0.0.2", 17)
    hops = [HopEvent(1, Hop.DEV_QUEUE, 1, ifname="veth0"), HopEvent(1, Hop.NETIF_RECEIVE, 2, ifname="eth0"),
            HopEvent(1, Hop.NETIF_RECEIVE, 3, ifname="eth1"), rp(), HopEvent(1, Hop.NETIF_RECEIVE, 5, ifname="eth2")]
    path = Path(1, header, hops)
    assert describe.receiving_device(path, 3) == "eth1"
    assert describe.receiving_device(path, 1) == ""
    assert describe.is_rp_filter(hops[3]) and not describe.is_rp_filter(hops[1])

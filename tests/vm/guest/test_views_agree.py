"""Where a function hook adds its own view of a verdict, it agrees with the tracepoint view.

On stock kernels a packet's path has both: the route lookups the fib tracepoints report (every
kernel) and the return values of fib_validate_source (rp_filter) and ip_route_input_noref (the
input route), which only fentry/kprobe hooks see.  Both must name the same outcome.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.kernel.lab import Lab
from tests.vm.guest.conftest import trace_one, udp_sender


def details(packet: dict[str, Any], hop: str) -> list[str]:
    return [h["detail"] for h in packet["hops"] if h["hop"] == hop]


def test_rp_filter_failure_in_both_views(lab: Lab) -> None:
    spoofed = lab.spoof_for_rp_filter()
    sender = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        f"s.bind(('{spoofed}', 0)); s.sendto(b'x' * 64, ('{lab.server_ip}', 7521))"
    )
    packet = trace_one(lab, [sys.executable, "-c", sender], lab.client)
    prefix = f"rp_filter check: src({spoofed}), iif({lab.if_router_client}), FAIL"
    assert details(packet, "fib_table_lookup")[-1] == f"{prefix} (no route back to the source, table main)"
    assert details(packet, "fib_validate_source") == [f"{prefix} (EXDEV(-18))"]
    assert packet["drop_reason"] == "IP_RPFILTER"


@pytest.mark.parametrize("kind", ["blackhole", "unreachable", "prohibit"])
def test_route_types_in_both_views(lab: Lab, kind: str) -> None:
    """The fib tracepoint names the route; ip_route_input_noref leaves an error route whose errno
    names it too (EINVAL, EHOSTUNREACH, EACCES)."""
    lab.ip(lab.router, "route", "add", kind, f"198.19.{lab.subnet_server}.0/24")
    dst = f"198.19.{lab.subnet_server}.7"
    packet = trace_one(lab, [sys.executable, "-c", udp_sender(dst, 7522)], lab.client, dst=dst)
    assert [d for d in details(packet, "fib_table_lookup") if "route" in d][-1].endswith(
        f"{kind} route (table main)"
    ), packet["hops"]
    assert details(packet, "ip_route_input_noref") == [
        f"ip route lookup: dst({dst}), src({lab.client_ip}), iif({lab.if_router_client}), no route ({kind})"
    ]

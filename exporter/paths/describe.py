"""What a route lookup or an rp_filter check found, in words.

One wording for the shell (exporter/tracer/render.py) and the spans (exporter/traces/spans.py), so
the two never disagree about what the kernel did.  Route lookups are named by what the kernel's
lookup returned (model.route_result): a blackhole route, for instance, is the only place a user
learns why a packet died with the drop reason NOT_SPECIFIED at ip_error.
"""

from __future__ import annotations

import errno

from exporter.paths.model import FibLookup, Hop, HopEvent, Path, route_result

FIB_TABLES = {253: "default", 254: "main", 255: "local"}


def table_name(table: int) -> str:
    return FIB_TABLES.get(table, str(table))


def receiving_device(path: Path, upto: int) -> str:
    """The device the packet was last received on before hop `upto` ("" when none was seen)."""
    for ev in reversed(path.hops[:upto]):
        if ev.hop is Hop.NETIF_RECEIVE and ev.ifname:
            return ev.ifname
    return ""


def route_phrase(ev: HopEvent) -> str:
    """A route lookup's answer: "found -> eth1", "found", "no route", "blackhole", "unreachable", "prohibit"."""
    result = route_result(ev.verdict)
    if ev.verdict == 0 and ev.out_ifname:
        return f"{result} -> {ev.out_ifname}"
    return result


def rp_filter_phrase(ev: HopEvent, iif: str) -> str:
    """rp_filter's verdict on the packet's source, in the original tool's words (PASS, FAIL), from
    either view the kernel gives of it:

    - the reverse route lookup (a FIB_LOOKUP hop of kind RP_FILTER, on every kernel): no route back
      to the source fails, in strict and loose mode alike; a route back through the device the
      packet came in on passes; one through another device fails strict mode (rp_filter=1) and
      passes loose mode (2), which the lookup alone cannot tell apart;
    - fib_validate_source()'s return value (an RP_FILTER hop, function hooks): < 0 fails.
    """
    if ev.hop is Hop.RP_FILTER:
        if ev.verdict >= 0:
            return "PASS"
        return f"FAIL ({errno.errorcode.get(-ev.verdict, 'error')}({ev.verdict}))"
    table = f"table {table_name(ev.table)}"
    if ev.verdict != 0:
        result = route_result(ev.verdict)
        what = "no route" if result == "no route" else f"{result} route"
        return f"FAIL ({what} back to the source, {table})"
    if not ev.out_ifname or not iif or ev.out_ifname == iif:
        via = f"route back via {ev.out_ifname}, " if ev.out_ifname else ""
        return f"PASS ({via}{table})"
    return f"FAIL in strict mode, PASS in loose (route back via {ev.out_ifname}, not iif {iif}, {table})"


def is_rp_filter(ev: HopEvent) -> bool:
    """rp_filter's view of the packet: its reverse lookup, or fib_validate_source()'s verdict."""
    return ev.hop is Hop.RP_FILTER or (ev.hop is Hop.FIB_LOOKUP and ev.fib_lookup is FibLookup.RP_FILTER)

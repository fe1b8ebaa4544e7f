"""The hop table: every hop pktpath reports, and everything about it, in one row.

A hop is where the kernel reported a followed packet: a tracepoint, or a function hook on kernels
that allow them.  Its row says what it is called (in spans, the shell, metrics and JSON), its role
in a path, which BPF programs emit it, whether it is attached only to follow packets, the kernel
module its function may live in, what it means, and how the shell and the spans name it.  Every
other spelling is derived from here:

- the C enum hop_id (exporter/bpf/pktpath.h) must list the hops in this table's order
  (`HOP_IDS`, checked against the compiled object's BTF when the agent starts, and by a test);
- the event decoder's id -> hop map, the assembler's terminal hops, the loader's module map and
  the agent's list of path-only programs;
- the shell's lines (`shell_line`), the span names (`span_name`) and the table in
  docs/architecture.md (`docs_table`, which a test compares with the document).

Adding a hop: a row here (and the Hop member above it), plus its BPF program.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from exporter.model import vocabulary as names

if TYPE_CHECKING:
    from exporter.model.path import HopEvent, Path


class Hop(StrEnum):
    """Hops by the name spans, metrics, JSON and the shell show; in the C enum hop_id's order."""

    NETIF_RECEIVE = "netif_receive_skb"
    FIB_LOOKUP = "fib_table_lookup"
    DEV_QUEUE = "net_dev_queue"
    DEV_XMIT = "net_dev_xmit"
    DELIVER = "skb_copy_datagram_iovec"
    CONSUME = "consume_skb"
    DROP = "kfree_skb"
    IP_RCV = "ip_rcv"
    NF_HOOK = "nf_hook_slow"
    NF_CHAIN = "nft_do_chain"
    RP_FILTER = "fib_validate_source"
    ROUTE_INPUT = "ip_route_input_noref"
    IP_FORWARD = "ip_forward"
    LOCAL_DELIVER = "ip_local_deliver"
    IP_OUTPUT = "ip_output"
    IP_RCV_FINISH = "ip_rcv_finish"
    IP_FORWARD_FINISH = "ip_forward_finish"
    IP_QUEUE_XMIT = "ip_queue_xmit"
    IP_FINISH_OUTPUT = "ip_finish_output"
    IPT_TABLE = "ipt_do_table"
    SOCK_QUEUE = "sk_data_ready"


class FibLookup(StrEnum):
    """Whose route lookup a FIB_LOOKUP hop is (the kernel tells them apart: exporter/bpf/paths.bpf.h)."""

    ROUTE = "route"  # the packet's own input route lookup
    RP_FILTER = "rp_filter"  # rp_filter's reverse lookup, from the packet's destination back to its source


class Role(StrEnum):
    ENTRY = "entry"  # may start a path (sample, filter, budget) and checks the packet it follows
    LATER = "later"  # only continues a path
    TERMINAL = "terminal"  # ends a path


class Kind(StrEnum):
    TRACEPOINT = "tracepoint"  # tp_btf: every kernel, locked-down ones too
    FUNCTION = "function hook"  # fentry/fexit, else kprobe/kretprobe: kernels that allow them


@dataclass(frozen=True)
class ShellContext:
    """What the shell's lines need from the host: kernel symbols, and route-lookup result names."""

    symbol: Callable[[int], str] = lambda _address: ""
    route_label: Callable[[int, int], str] | None = None  # (return value, error route's errno) -> name


SpanName = Callable[["HopEvent", str], str]  # (event, device it was received on) -> span name
ShellLine = Callable[["Path", int, ShellContext], str]  # (path, hop index, context) -> the shell's line


@dataclass(frozen=True)
class HopSpec:
    hop: Hop
    kind: Kind
    role: Role
    programs: tuple[str, ...]  # BPF programs (name prefix before "__") that emit it: the loader's hops
    meaning: str  # one line: what it says about the packet
    span: SpanName
    shell: ShellLine
    # Also counts every packet, unsampled, into this metric: attached whether or not paths are on.
    counter: str = ""
    # Kernel function -> the module it lives in when not built in (attached when the module loads).
    modules: Mapping[str, str] = field(default_factory=dict)

    @property
    def always_on(self) -> bool:
        """Attached for its counters (drops, verdicts), not only to follow packets."""
        return bool(self.counter) or self.hop is Hop.DROP


# --- what a route lookup or an rp_filter check found, in words ------------------------------
#
# One wording for the shell and the spans, so the two never disagree about what the kernel did.
# Route lookups are named by what the kernel's lookup returned (vocabulary.route_result): a
# blackhole route, for instance, is the only place a user learns why a packet died with the drop
# reason NOT_SPECIFIED at ip_error.


def receiving_device(path: Path, upto: int) -> str:
    """The device the packet was last received on before hop `upto` ("" when none was seen)."""
    for ev in reversed(path.hops[:upto]):
        if ev.hop is Hop.NETIF_RECEIVE and ev.ifname:
            return ev.ifname
    return ""


def route_phrase(ev: HopEvent) -> str:
    """A route lookup's answer: "found -> eth1", "found", "no route", "blackhole", "unreachable", "prohibit"."""
    result = names.route_result(ev.verdict)
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
        return "PASS" if ev.verdict >= 0 else f"FAIL ({names.errno_text(ev.verdict)})"
    table = f"table {names.table_name(ev.table)}"
    if ev.verdict != 0:
        result = names.route_result(ev.verdict)
        what = "no route" if result == "no route" else f"{result} route"
        return f"FAIL ({what} back to the source, {table})"
    if not ev.out_ifname or not iif or ev.out_ifname == iif:
        via = f"route back via {ev.out_ifname}, " if ev.out_ifname else ""
        return f"PASS ({via}{table})"
    return f"FAIL in strict mode, PASS in loose (route back via {ev.out_ifname}, not iif {iif}, {table})"


def is_rp_filter(ev: HopEvent) -> bool:
    """rp_filter's view of the packet: its reverse lookup, or fib_validate_source()'s verdict."""
    return ev.hop is Hop.RP_FILTER or (ev.hop is Hop.FIB_LOOKUP and ev.fib_lookup is FibLookup.RP_FILTER)


# --- how each hop reads ----------------------------------------------------------------------


def _dev(ev: HopEvent) -> str:
    return ev.ifname or "unknown"


def _with_dev(ev: HopEvent, _iif: str) -> str:
    """The default span name: the hop, with its device: ``ip_rcv(eth0)``."""
    return f"{ev.hop.value}({ev.ifname})" if ev.ifname else ev.hop.value


def _fixed(name: str) -> SpanName:
    return lambda _ev, _iif: name


def _line(text: Callable[[HopEvent], str]) -> ShellLine:
    """A shell line that needs only the event."""
    return lambda path, index, _ctx: text(path.hops[index])


def _src_dst(path: Path) -> tuple[str, str]:
    h = path.header
    return (h.src, h.dst) if h is not None else ("?", "?")


def _nf_where(ev: HopEvent) -> str:
    return (
        f"{names.NF_FAMILY_CONSTANTS.get(ev.nf_family, 'NFPROTO')}({ev.nf_family}), "
        f"{names.NF_HOOK_CONSTANTS.get(ev.nf_hook, 'NF_INET')}({ev.nf_hook})"
    )


def _nf_hook_line(ev: HopEvent) -> str:
    """The original's netfilter lines: "Will check NFPROTO_IPV4(2), NF_INET_PRE_ROUTING(0), ..."."""
    if ev.phase == 0:
        return f"Will check {_nf_where(ev)}, In_intf:{_dev(ev)}, Out_intf:{ev.out_ifname or 'unknown'}"
    result = "PASS" if ev.verdict == 1 else "DROP" if ev.verdict < 0 else "STOLEN/QUEUED"
    return f"{_nf_where(ev)}, check done, {result}"


def _table_verdict_line(ev: HopEvent) -> str:
    verdict = f"{names.NF_VERDICT_CONSTANTS.get(ev.verdict, 'NF_VERDICT')}({ev.verdict})"
    return f"{ev.nf_table}/{ev.nf_chain}, {_nf_where(ev)}, check done, {verdict}"


def _table_verdict_span(ev: HopEvent, iif: str) -> str:
    # Which table and chain decided, at a glance in a trace view: "ipt_do_table filter/INPUT: drop".
    if not ev.nf_table:
        return _with_dev(ev, iif)
    return f"{ev.hop.value} {ev.nf_table}/{ev.nf_chain}: {names.nf_verdict_name(ev.verdict)}"


def _rp_filter_line(path: Path, index: int, _ctx: ShellContext) -> str:
    ev = path.hops[index]
    iif = ev.ifname or receiving_device(path, index)
    return f"rp_filter check: src({_src_dst(path)[0]}), iif({iif or 'unknown'}), {rp_filter_phrase(ev, iif)}"


def _rp_filter_span(ev: HopEvent, iif: str) -> str:
    return f"rp_filter check: {rp_filter_phrase(ev, ev.ifname or iif)}"


def _fib_span(ev: HopEvent, iif: str) -> str:
    if is_rp_filter(ev):
        return _rp_filter_span(ev, iif)
    return f"fib lookup (table {names.table_name(ev.table)}, {route_phrase(ev)})"


def _fib_line(path: Path, index: int, ctx: ShellContext) -> str:
    """The packet's own route lookup; its reverse lookup for rp_filter is an rp_filter line."""
    ev = path.hops[index]
    if is_rp_filter(ev):
        return _rp_filter_line(path, index, ctx)
    result = names.route_result(ev.verdict)
    text = "found route" if ev.verdict == 0 else "no route" if result == "no route" else f"{result} route"
    if ev.verdict == 0 and ev.out_ifname:
        text += f" -> {ev.out_ifname}"
    iif = receiving_device(path, index) or "unknown"
    return (
        f"ip route lookup: dst({ev.fib_dst}), src({ev.fib_src or '0.0.0.0'}), iif({iif}), "
        f"{text} (table {names.table_name(ev.table)})"
    )


def _route_input_line(path: Path, index: int, ctx: ShellContext) -> str:
    ev = path.hops[index]
    result = ctx.route_label(ev.verdict, ev.route_error) if ctx.route_label else str(ev.verdict or ev.route_error)
    found = "found route" if result == "found" else f"no route ({result})"
    src, dst = _src_dst(path)
    return f"ip route lookup: dst({dst}), src({src}), iif({_dev(ev)}), {found}"


def _xmit_span(ev: HopEvent, iif: str) -> str:
    name = _with_dev(ev, iif)
    return name if ev.verdict == 0 else f"{name} rc={ev.verdict}"


def _xmit_line(ev: HopEvent) -> str:
    rc = (
        "NETDEV_TX_OK(0)"
        if ev.verdict == 0
        else f"NETDEV_TX_BUSY({ev.verdict})"
        if ev.verdict == 16
        else f"error({ev.verdict})"
    )
    return f"transmitted by {_dev(ev)}, rc:{rc}"


def _at(ctx: ShellContext, ev: HopEvent) -> str:
    where = ctx.symbol(ev.location)
    return f" at {where}" if where else ""


def _consume_line(path: Path, index: int, ctx: ShellContext) -> str:
    return f"consumed (freed after normal processing){_at(ctx, path.hops[index])}"


def _drop_line(path: Path, index: int, ctx: ShellContext) -> str:
    ev = path.hops[index]
    return f"Dropped: {ev.reason or UNKNOWN_REASON}{_at(ctx, ev)}"


UNKNOWN_REASON = "UNKNOWN"

_T, _F = Kind.TRACEPOINT, Kind.FUNCTION
_ENTRY, _LATER, _END = Role.ENTRY, Role.LATER, Role.TERMINAL

# In the C enum hop_id's order (HOP_IDS numbers them from 1).
TABLE: tuple[HopSpec, ...] = (
    HopSpec(
        Hop.NETIF_RECEIVE,
        _T,
        _ENTRY,
        ("netif_receive_skb",),
        "a device handed the packet to the stack",
        _with_dev,
        _line(lambda ev: f"received on {_dev(ev)} (netns {ev.netns}), len:{ev.length}"),
    ),
    HopSpec(
        Hop.FIB_LOOKUP,
        _T,
        _LATER,
        ("fib_table_lookup", "fib6_table_lookup"),
        "its route lookup, or rp_filter's reverse lookup (no skb: attributed to the CPU's packet)",
        _fib_span,
        _fib_line,
    ),
    HopSpec(
        Hop.DEV_QUEUE,
        _T,
        _ENTRY,
        ("net_dev_queue",),
        "queued for transmit on a device",
        _with_dev,
        _line(lambda ev: f"queued for transmit on {_dev(ev)}, len:{ev.length}"),
    ),
    HopSpec(
        Hop.DEV_XMIT, _T, _LATER, ("net_dev_xmit",), "handed to the device's driver", _xmit_span, _line(_xmit_line)
    ),
    HopSpec(
        Hop.DELIVER,
        _T,
        _END,
        ("skb_copy_datagram_iovec",),
        "its payload copied to a local socket's reader",
        _fixed("deliver to socket"),
        _line(lambda _ev: "delivered: payload copied to a local socket"),
    ),
    HopSpec(
        Hop.CONSUME, _T, _END, ("consume_skb",), "freed after normal processing", _fixed("consume_skb"), _consume_line
    ),
    HopSpec(
        Hop.DROP,
        _T,
        _END,
        ("kfree_skb",),
        "dropped, with the kernel's reason (and counted, every packet)",
        lambda ev, _iif: f"DROPPED: {ev.reason or UNKNOWN_REASON}",
        _drop_line,
    ),
    HopSpec(
        Hop.IP_RCV,
        _F,
        _ENTRY,
        ("ip_rcv", "ipv6_rcv"),
        "IPv4/IPv6 receive",
        _with_dev,
        _line(lambda ev: f"IP receive on {_dev(ev)}, len:{ev.length}"),
    ),
    HopSpec(
        Hop.NF_HOOK,
        _F,
        _LATER,
        ("nf_hook_slow",),
        "a netfilter hook: entry (in/out device), verdict",
        _with_dev,
        _line(_nf_hook_line),
    ),
    HopSpec(
        Hop.NF_CHAIN,
        _F,
        _LATER,
        ("nft_do_chain",),
        "an nftables chain: table/chain, verdict",
        _table_verdict_span,
        _line(_table_verdict_line),
        counter="pktpath_netfilter_verdicts_total",
        modules={"nft_do_chain": "nf_tables"},
    ),
    HopSpec(
        Hop.RP_FILTER,
        _F,
        _LATER,
        ("fib_validate_source",),
        "rp_filter's verdict (the function's return)",
        _rp_filter_span,
        _rp_filter_line,
        counter="pktpath_rp_filter_checks_total",
    ),
    HopSpec(
        Hop.ROUTE_INPUT,
        _F,
        _LATER,
        ("ip_route_input_noref",),
        "the input route lookup's result",
        _with_dev,
        _route_input_line,
        counter="pktpath_route_lookups_total",
    ),
    HopSpec(
        Hop.IP_FORWARD,
        _F,
        _LATER,
        ("ip_forward", "ip6_forward"),
        "forwarding starts",
        _with_dev,
        _line(lambda ev: f"forwarding (ip_forward), len:{ev.length}"),
    ),
    HopSpec(
        Hop.LOCAL_DELIVER,
        _F,
        _LATER,
        ("ip_local_deliver",),
        "local delivery",
        _with_dev,
        _line(lambda _ev: "local delivery (ip_local_deliver)"),
    ),
    HopSpec(
        Hop.IP_OUTPUT,
        _F,
        _ENTRY,
        ("ip_output", "ip6_output"),
        "IP output (first hop of packets made here)",
        _with_dev,
        _line(lambda ev: f"IP output, len:{ev.length}"),
    ),
    HopSpec(
        Hop.IP_RCV_FINISH,
        _F,
        _LATER,
        ("ip_rcv_finish", "ip6_rcv_finish"),
        "past PRE_ROUTING (inlined on Debian 6.1/6.12: seen only for reinjected packets, docs/kernels.md)",
        _with_dev,
        _line(lambda ev: f"IP receive finish (past PRE_ROUTING) on {_dev(ev)}"),
    ),
    HopSpec(
        Hop.IP_FORWARD_FINISH,
        _F,
        _LATER,
        ("ip_forward_finish",),
        "past the FORWARD hook (no IPv6 twin: inlined)",
        _with_dev,
        _line(lambda ev: f"forward finish (past FORWARD), len:{ev.length}"),
    ),
    HopSpec(
        Hop.IP_QUEUE_XMIT,
        _F,
        _LATER,
        ("ip_queue_xmit", "ip6_xmit"),
        "a socket (TCP, SCTP) handed the segment to IP (reported at ip_output, with its own time)",
        _with_dev,
        _line(lambda ev: f"socket queued the segment to IP (ip_queue_xmit), len:{ev.length}"),
    ),
    HopSpec(
        Hop.IP_FINISH_OUTPUT,
        _F,
        _LATER,
        ("ip_finish_output", "ip6_finish_output"),
        "past the POST_ROUTING hook",
        _with_dev,
        _line(lambda ev: f"IP finish output (past POST_ROUTING), len:{ev.length}"),
    ),
    HopSpec(
        Hop.IPT_TABLE,
        _F,
        _LATER,
        ("ipt_do_table",),
        "an iptables-legacy table: table/built-in chain, verdict",
        _table_verdict_span,
        _line(_table_verdict_line),
        counter="pktpath_netfilter_verdicts_total",
        modules={"ipt_do_table": "ip_tables"},
    ),
    HopSpec(
        Hop.SOCK_QUEUE,
        _T,
        _END,
        ("sk_data_ready",),
        "queued to a local socket (6.13+; no skb: attributed to the CPU's packet)",
        lambda ev, _iif: f"queued to socket (port {ev.verdict})",
        _line(lambda ev: f"delivered: queued to a local socket (port {ev.verdict})"),
    ),
)

SPECS: Mapping[Hop, HopSpec] = {spec.hop: spec for spec in TABLE}
if list(SPECS) != list(Hop):
    raise RuntimeError("exporter/model/hops.py: TABLE must have one row per Hop, in Hop's order")

# The C enum hop_id, numbered from 1 in this table's order (exporter/bpf/pktpath.h).
HOP_IDS: Mapping[str, int] = {f"HOP_{spec.hop.name}": number for number, spec in enumerate(TABLE, 1)}
BY_ID: Mapping[int, Hop] = {number: spec.hop for number, spec in enumerate(TABLE, 1)}
TERMINAL_HOPS = frozenset(spec.hop for spec in TABLE if spec.role is Role.TERMINAL)
# The loader's hops (BPF program prefixes) attached only to follow packets.
PATH_ONLY_PROGRAMS = tuple(p for spec in TABLE if not spec.always_on for p in spec.programs)
MODULE_OF: Mapping[str, str] = {fn: mod for spec in TABLE for fn, mod in spec.modules.items()}


def span_name(ev: HopEvent, iif: str = "") -> str:
    """The span of a hop: ``netif_receive_skb(eth0)``, ``fib lookup (table main, blackhole)``,
    ``rp_filter check: FAIL (...)``, ``DROPPED: NETFILTER_DROP`` ...  `iif`: the device the packet
    was last received on before this hop (receiving_device), which rp_filter is about."""
    return SPECS[ev.hop].span(ev, iif)


def shell_line(path: Path, index: int, ctx: ShellContext) -> str:
    """The shell's line for hop `index` of `path` (the first hop's line is the packet's header)."""
    return SPECS[path.hops[index].hop].shell(path, index, ctx)


def docs_table(candidates: Callable[[str], str]) -> str:
    """docs/architecture.md's hop table; `candidates(program)` describes a loader hop's attach
    candidates as the compiled object has them ("tp", "fentry, kprobe" ...)."""
    rows = [
        "| event hop (span name) | loader hops: candidates, best first | kind | role | what it says |",
        "|---|---|---|---|---|",
    ]
    for spec in TABLE:
        loaders = "; ".join(f"{p}: {candidates(p)}" for p in spec.programs)
        role = spec.role.value + (", counter" if spec.counter else "")
        rows.append(f"| `{spec.hop.value}` | {loaders} | {spec.kind.value} | {role} | {spec.meaning} |")
    return "\n".join(rows)

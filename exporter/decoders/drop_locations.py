"""Where drops happened, on kernels that do not say why (before 5.17).

Kernels before 5.17 name no drop reasons, but their `skb:kfree_skb`
tracepoint has always given `location`, the return address of the call to
kfree_skb(): the call site of the drop (dropwatch's whole output).  On such
kernels (decided once at start, from BTF: `enum skb_drop_reason` is absent)
the kernel side keys every drop by that address too (drops.bpf.h), and this
module turns it into

- a `location` label: the function holding the call site, named from
  /proc/kallsyms, without the compiler's suffixes (`ip_rcv_finish_core.constprop.0`
  -> `ip_rcv_finish_core`).  At most `limit` distinct functions get a label of
  their own; the drops of any further function are counted under `other`, and
  each such function once in `overflow`.  `unknown` when kallsyms hides
  addresses (kptr_restrict, not root) or none holds the address;
- a reason, where the call site and the evidence the kernel side adds
  (DROP_EVIDENCE_*: the route error and the device's forwarding setting,
  drops.bpf.h) decide it unambiguously: the reason kernels with reasons (6.1 and
  later) give at the same call site, under the kernel's own name.  Everything
  else stays UNKNOWN, as before.

SITES below is the whole mapping, with the reasoning for each entry (call
sites read in Debian 11's 5.10.0-46 sources and its compiled kernel;
docs/kernels.md has the same table, and the call sites that stay UNKNOWN).
"""

from __future__ import annotations

import errno
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from exporter.decoders.symbols import KernelSymbols
from exporter.model.abi import DROP_EVIDENCE_ERRNO, DROP_EVIDENCE_FORWARDING, DROP_EVIDENCE_IN_DEV

log = logging.getLogger(__name__)

UNKNOWN = "UNKNOWN"
OTHER = "other"  # a function past the label limit
UNRESOLVED = "unknown"  # kallsyms hides the address, or no function holds it
DEFAULT_LIMIT = 64
_ADDRESS_CACHE = 8192  # distinct call-site addresses remembered (a kernel has a few thousand)

# Compiler-made copies and parts of a function: .constprop.0, .isra.0, .part.0, .cold, .llvm.123 ...
_SUFFIX = re.compile(r"\.(?:constprop|isra|part|cold|llvm|lto_priv|localalias)(?:\.\d+)?.*$")


def function_label(symbol: str) -> str:
    """kallsyms' name of a compiled function -> the source function's name."""
    return _SUFFIX.sub("", symbol)


@dataclass(frozen=True)
class Evidence:
    """DROP_EVIDENCE_* of one drop, unpacked."""

    route_errno: int  # EXDEV: rp_filter failed; else the error route's dst.error; 0: none
    in_dev: bool  # the receiving device has IPv4 configured
    forwarding: bool  # ... with forwarding on

    @classmethod
    def of(cls, raw: int) -> Evidence:
        return cls(raw & DROP_EVIDENCE_ERRNO, bool(raw & DROP_EVIDENCE_IN_DEV), bool(raw & DROP_EVIDENCE_FORWARDING))


def _ip_error(ev: Evidence) -> str | None:
    """ip_error() frees every packet that met an error route, and 6.1+ decides the reason from
    exactly what the evidence holds: the route's dst.error and IN_DEV_FORWARD of the receiving device."""
    if not ev.route_errno:
        return None  # no error route seen: not a drop ip_error() decides
    if not ev.in_dev:
        return "NOT_SPECIFIED"  # "IP on this device is disabled": goto out
    if ev.route_errno == errno.ENETUNREACH:
        return "IP_INNOROUTES"  # both branches count IPSTATS_MIB_INNOROUTES
    if ev.route_errno == errno.EHOSTUNREACH and not ev.forwarding:
        return "IP_INADDRERRORS"  # forwarding off: the lookup's error became -EHOSTUNREACH
    return "NOT_SPECIFIED"  # blackhole (EINVAL), prohibit (EACCES), unreachable route with forwarding on


def _ip_rcv_finish_core(ev: Evidence) -> str | None:
    """One kfree_skb for every failure of the receive path's checks; only the rp_filter failure
    (fib_validate_source's -EXDEV, noted by its hook for this very packet) is told apart."""
    return "IP_RPFILTER" if ev.route_errno == errno.EXDEV else None


@dataclass(frozen=True)
class Site:
    function: str  # function_label() of the call site
    derive: Callable[[Evidence], str | None]
    why: str


SITES: dict[str, Site] = {
    s.function: s
    for s in (
        Site(
            "nf_hook_slow",
            lambda _ev: "NETFILTER_DROP",
            "net/netfilter/core.c: its one kfree_skb is the NF_DROP verdict of a hook's rules (iptables, "
            "nftables, conntrack); 6.1+ frees the packet there with NETFILTER_DROP. NF_QUEUE failures are "
            "freed in nf_queue(), a function of their own.",
        ),
        Site(
            "ip_error",
            _ip_error,
            "net/ipv4/route.c: the input of every error route ip_route_input_slow() makes (no route, "
            "forwarding off, blackhole, unreachable, prohibit); its one kfree_skb. 6.1+ names IP_INNOROUTES "
            "for dst.error ENETUNREACH, IP_INADDRERRORS for EHOSTUNREACH when the receiving device does "
            "not forward, NOT_SPECIFIED otherwise: the evidence carries both facts.",
        ),
        Site(
            "ip_rcv_finish_core",
            _ip_rcv_finish_core,
            "net/ipv4/ip_input.c: one kfree_skb (label drop) for a failed route lookup (rp_filter -EXDEV, "
            "martian -EINVAL, -ENOBUFS), bad IP options and unicast in L2 multicast. Only -EXDEV is "
            'IP_RPFILTER (6.1+: "if (err == -EXDEV) drop_reason = SKB_DROP_REASON_IP_RPFILTER"); it is '
            "known when the fib_validate_source hook saw this packet fail (needs fentry or kprobes).",
        ),
    )
}


class DropLocations:
    """Call-site addresses -> `location` labels (bounded) and derived reasons.  Thread-safe: the
    scrape threads and the path pipeline both ask."""

    def __init__(self, symbols: KernelSymbols | None = None, limit: int = DEFAULT_LIMIT) -> None:
        self.symbols = symbols or KernelSymbols()
        self.limit = limit
        self.overflow = 0  # functions that found the label limit reached
        self._functions: dict[int, str] = {}  # address -> function_label ("" unresolved)
        self._labelled: set[str] = set()
        self._refused: set[str] = set()
        self._lock = threading.Lock()
        self._warned_hidden = False

    def preload(self) -> None:
        """Parse kallsyms in the background now, so the first scrape does not wait for it."""
        self.symbols.load_async()

    def function(self, address: int) -> str:
        """The source function of a call site, "" when it cannot be named."""
        with self._lock:
            found = self._functions.get(address)
            if found is not None:
                return found
            # A module loaded since kallsyms was read would have its call sites named after
            # whatever symbol precedes them: new addresses are rare, so check every time.
            self.symbols.refresh_if_modules_changed()
            symbol = self.symbols.function(address)
            if not symbol and self.symbols.hidden and not self._warned_hidden:
                self._warned_hidden = True
                log.warning(
                    "/proc/kallsyms hides kernel addresses (kptr_restrict, or not root): drop locations read %r",
                    UNRESOLVED,
                )
            if len(self._functions) >= _ADDRESS_CACHE:
                self._functions.clear()
            name = function_label(symbol) if symbol else ""
            self._functions[address] = name
            return name

    def label(self, address: int) -> str:
        """The `location` label: the function, `other` past the limit, `unknown` if unnamed."""
        name = self.function(address)
        if not name:
            return UNRESOLVED
        with self._lock:
            if name in self._labelled:
                return name
            if len(self._labelled) < self.limit:
                self._labelled.add(name)
                return name
            if name not in self._refused:
                self._refused.add(name)
                self.overflow += 1
        return OTHER

    def reason(self, address: int, evidence: int) -> str:
        """The reason a kernel with reasons gives at this call site, or UNKNOWN."""
        site = SITES.get(self.function(address))
        return (site.derive(Evidence.of(evidence)) if site else None) or UNKNOWN

"""Names for netfilter families, hooks and verdicts, and for route lookup results.

The netfilter numbers are uapi (include/uapi/linux/netfilter.h), fixed for good.
Route lookup results are not: ip_route_input_noref() returned -errno until 6.12
and an enum skb_drop_reason since 6.13, so RouteResults reads which one the
running kernel uses from the function's BTF return type.
"""

from __future__ import annotations

import errno
from typing import Protocol

from exporter.decoders.drop_reasons import DropReasons

NF_FAMILIES = {0: "unspec", 1: "inet", 2: "ipv4", 3: "arp", 5: "netdev", 7: "bridge", 10: "ipv6"}
NF_HOOKS = {0: "prerouting", 1: "input", 2: "forward", 3: "output", 4: "postrouting", 5: "ingress", 6: "egress"}
NF_VERDICTS = {0: "drop", 1: "accept", 2: "stolen", 3: "queue", 4: "repeat", 5: "stop"}

# The original tool's spelling, for the shell: NFPROTO_IPV4(2), NF_INET_PRE_ROUTING(0), NF_ACCEPT(1).
NF_FAMILY_CONSTANTS = {0: "NFPROTO_UNSPEC", 1: "NFPROTO_INET", 2: "NFPROTO_IPV4", 3: "NFPROTO_ARP",
                       5: "NFPROTO_NETDEV", 7: "NFPROTO_BRIDGE", 10: "NFPROTO_IPV6"}
NF_HOOK_CONSTANTS = {0: "NF_INET_PRE_ROUTING", 1: "NF_INET_LOCAL_IN", 2: "NF_INET_FORWARD",
                     3: "NF_INET_LOCAL_OUT", 4: "NF_INET_POST_ROUTING", 5: "NF_INET_INGRESS"}
NF_VERDICT_CONSTANTS = {0: "NF_DROP", 1: "NF_ACCEPT", 2: "NF_STOLEN", 3: "NF_QUEUE", 4: "NF_REPEAT", 5: "NF_STOP"}


# iptables' built-in chain of each hook.  A legacy (x_tables) table has no chain objects in the
# kernel: ipt_do_table() walks the table's rules from the hook's entry point, which is that chain.
BUILTIN_CHAINS = {0: "PREROUTING", 1: "INPUT", 2: "FORWARD", 3: "OUTPUT", 4: "POSTROUTING"}


def builtin_chain(hook: int) -> str:
    return BUILTIN_CHAINS.get(hook, f"hook{hook}")


def family_name(n: int) -> str:
    return NF_FAMILIES.get(n, str(n))


def hook_name(n: int) -> str:
    return NF_HOOKS.get(n, str(n))


def verdict_name(n: int) -> str:
    return NF_VERDICTS.get(n, str(n))


# An error route's errno (net/ipv4/route.c ip_route_input_slow, no_route: rth->dst.error = -err):
# the fib lookup's own error, or EHOSTUNREACH for a router with forwarding off, which before 6.13
# the kernel does not tell apart from an `unreachable` route.
_ROUTE_ERRORS = {errno.ENETUNREACH: "no_route", errno.EINVAL: "blackhole", errno.EHOSTUNREACH: "unreachable",
                 errno.EACCES: "prohibit"}
# The same result, whichever convention the kernel reports it in.
_ERRNO_RESULTS = {errno.ENETUNREACH: "no_route", errno.EHOSTUNREACH: "forwarding_disabled",
                  errno.EXDEV: "rp_filter", errno.EINVAL: "martian"}
_REASON_RESULTS = {"IP_INNOROUTES": "no_route", "IP_INADDRERRORS": "forwarding_disabled",
                   "IP_RPFILTER": "rp_filter", "IP_INVALID_SOURCE": "martian", "IP_INVALID_DEST": "martian",
                   "IP_LOCALNET": "martian"}


class _FuncReturns(Protocol):
    def func_return(self, name: str) -> tuple[int, str] | None: ...


def returns_drop_reason(btf: _FuncReturns, func: str) -> bool:
    """Whether `func` returns an enum skb_drop_reason (6.13+ route lookups) rather than -errno."""
    ret = btf.func_return(func)
    return ret is not None and ret[1] == "skb_drop_reason"


class RouteResults:
    def __init__(self, returns_reason: bool, reasons: DropReasons) -> None:
        self.returns_reason = returns_reason
        self._reasons = reasons

    def label(self, ret: int, route_error: int = 0) -> str:
        """found, no_route, blackhole, unreachable, prohibit, forwarding_disabled, rp_filter, martian,
        or the raw reason/errno name.  `route_error`: with `ret` 0, the errno of the error route the
        lookup installed (a miss on a router returns 0 and leaves such a route; ip_error drops it)."""
        if ret == 0:
            if not route_error:
                return "found"
            return _ROUTE_ERRORS.get(route_error, errno.errorcode.get(route_error, f"error_{route_error}").lower())
        if ret > 0 and self.returns_reason:  # 6.13+: the function's own drop reason
            name = self._reasons.name(ret)
            return _REASON_RESULTS.get(name, name.lower())
        code = -ret  # -errno returned directly
        return _ERRNO_RESULTS.get(code, errno.errorcode.get(code, f"error_{ret}").lower())

"""Names for the input route lookup's results (pktpath_route_lookups_total, the shell's lines).

They depend on the kernel: ip_route_input_noref() returned -errno until 6.12 and an enum
skb_drop_reason since 6.13, so RouteResults reads which one the running kernel uses from the
function's BTF return type.  (Netfilter's fixed uapi names are in exporter/model/vocabulary.py.)
"""

from __future__ import annotations

import errno
from typing import Protocol

from exporter.decoders.drop_reasons import DropReasons

# An error route's errno (net/ipv4/route.c ip_route_input_slow, no_route: rth->dst.error = -err):
# the fib lookup's own error, or EHOSTUNREACH for a router with forwarding off, which before 6.13
# the kernel does not tell apart from an `unreachable` route.
_ROUTE_ERRORS = {
    errno.ENETUNREACH: "no_route",
    errno.EINVAL: "blackhole",
    errno.EHOSTUNREACH: "unreachable",
    errno.EACCES: "prohibit",
}
# The same result, whichever convention the kernel reports it in.
_ERRNO_RESULTS = {
    errno.ENETUNREACH: "no_route",
    errno.EHOSTUNREACH: "forwarding_disabled",
    errno.EXDEV: "rp_filter",
    errno.EINVAL: "martian",
}
_REASON_RESULTS = {
    "IP_INNOROUTES": "no_route",
    "IP_INADDRERRORS": "forwarding_disabled",
    "IP_RPFILTER": "rp_filter",
    "IP_INVALID_SOURCE": "martian",
    "IP_INVALID_DEST": "martian",
    "IP_LOCALNET": "martian",
}


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

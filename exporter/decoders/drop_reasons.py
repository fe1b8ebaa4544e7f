"""Drop reason numbers -> names, read from the running kernel's BTF.

Reason numbers change between kernels (new reasons are inserted mid-enum), so
pktpath never ships a table of numbers: `enum skb_drop_reason` is read from
/sys/kernel/btf/vmlinux at start-up.  Labels drop the `SKB_DROP_REASON_`
prefix (SKB_DROP_REASON_NETFILTER_DROP -> NETFILTER_DROP).

Since 6.4 a reason's high 16 bits name a subsystem (`enum
skb_drop_reason_subsys`); such reasons are defined by modules (openvswitch,
mac80211) in their own enums, found in the module's BTF under
/sys/kernel/btf/<module>.  Those are looked up lazily, the first time a
subsystem reason is seen, because most hosts never see one.

Before 5.17 there is no enum: `at()` then derives what it can from each drop's
call site (drop_locations.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from exporter.decoders.drop_locations import DropLocations

log = logging.getLogger(__name__)

# include/net/dropreason.h: SKB_DROP_REASON_SUBSYS_SHIFT.  A #define, so not
# in BTF; it is part of the tracepoint ABI and has not changed since 6.4.
SUBSYS_SHIFT = 16
SUBSYS_MASK = 0xFFFF0000

_PREFIX = "SKB_DROP_REASON_"
_SUBSYS_PREFIX = "SKB_DROP_REASON_SUBSYS_"

Enum = list[tuple[str, int]]


def reason_label(enumerator: str) -> str:
    """SKB_DROP_REASON_NO_SOCKET -> NO_SOCKET; SKB_CONSUMED -> CONSUMED; others unchanged."""
    if enumerator.startswith(_PREFIX):
        return enumerator[len(_PREFIX) :]
    if enumerator.startswith("SKB_"):
        return enumerator[len("SKB_") :]
    return enumerator


class DropReasons:
    """Decode raw reason values as the tracepoint reports them."""

    def __init__(
        self,
        core: Enum | None,
        subsystems: Enum | None = None,
        module_enums: Callable[[], Iterable[Enum]] | None = None,
        locations: DropLocations | None = None,
    ) -> None:
        # core None: the kernel predates drop reasons (< 5.17): drops are told apart by where they
        # happened instead (`locations`, drop_locations.py), with a reason where that decides one.
        self.kernel_has_reasons = core is not None
        self.locations = None if self.kernel_has_reasons else (locations or DropLocations())
        self._names: dict[int, str] = {}
        for name, value in core or ():
            if name.startswith("__") or name.endswith("_MAX"):
                continue  # sentinels such as SKB_DROP_REASON_MAX are not reasons
            self._names.setdefault(value, reason_label(name))
        self._subsys: dict[int, str] = {}
        for name, value in subsystems or ():
            if name.startswith(_SUBSYS_PREFIX) and not name.endswith("_NUM"):
                self._subsys[value] = name[len(_SUBSYS_PREFIX) :]
        self._module_enums = module_enums
        self._modules_scanned = False

    def at(self, value: int, location: int) -> str:
        """The reason of one drop: the kernel's, else the one its call site and evidence decide."""
        if self.locations is not None:
            return self.locations.reason(location, value)
        return self.name(value)

    def name(self, value: int) -> str:
        if not self.kernel_has_reasons:
            return "UNKNOWN"
        found = self._names.get(value)
        if found is not None:
            return found
        subsys = (value & SUBSYS_MASK) >> SUBSYS_SHIFT
        if subsys and not self._modules_scanned:
            self._scan_modules()
            found = self._names.get(value)
            if found is not None:
                return found
        if subsys:
            # A module we cannot see (not loaded, no BTF): keep the subsystem.
            return f"{self._subsys.get(subsys, f'SUBSYS_{subsys}')}_{value & ~SUBSYS_MASK}"
        return f"UNKNOWN_{value}"

    def _scan_modules(self) -> None:
        self._modules_scanned = True
        if self._module_enums is None:
            return
        for members in self._module_enums():
            for name, value in members:
                # Only values carrying a known subsystem id are reasons (the
                # enums also hold a __*_BASE sentinel equal to the subsystem base).
                if value & SUBSYS_MASK and (value >> SUBSYS_SHIFT) in self._subsys and not name.startswith("__"):
                    self._names.setdefault(value, name)

    def known(self) -> dict[int, str]:
        return dict(self._names)

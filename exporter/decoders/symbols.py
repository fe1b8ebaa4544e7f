"""Kernel addresses -> "function+0xoff", from /proc/kallsyms, for drop call sites.

Loaded lazily on first use (the file has ~200k lines; ~0.2 s) and only by the
interactive tracer, which shows where each packet died.  Where kallsyms hides
addresses (kptr_restrict, or not root) every address reads as 0 and lookups
return "" rather than a wrong name.
"""

from __future__ import annotations

import bisect


class KernelSymbols:
    def __init__(self, path: str = "/proc/kallsyms") -> None:
        self.path = path
        self._addrs: list[int] | None = None
        self._names: list[str] = []

    def _load(self) -> None:
        pairs: list[tuple[int, str]] = []
        try:
            with open(self.path) as f:
                for line in f:
                    parts = line.split()
                    # Text symbols only: t/T (functions); W/w weak functions too.
                    if len(parts) >= 3 and parts[1] in ("t", "T", "w", "W"):
                        addr = int(parts[0], 16)
                        if addr:
                            pairs.append((addr, parts[2]))
        except OSError:
            pairs = []
        pairs.sort()
        self._addrs = [a for a, _ in pairs]
        self._names = [n for _, n in pairs]

    def lookup(self, addr: int) -> str:
        """"nft_do_chain+0x3c2", or "" when unknown."""
        if not addr:
            return ""
        if self._addrs is None:
            self._load()
        assert self._addrs is not None
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0:
            return ""
        return f"{self._names[i]}+{addr - self._addrs[i]:#x}"

"""Kernel addresses -> function names, from /proc/kallsyms, for drop call sites.

Used by the interactive tracer ("function+0xoff" where each packet died) and,
on kernels without drop reasons, by the drop counters' `location` label
(drop_locations.py).  The file has 100-200k lines: it is parsed once, on first
use or in the background (`load_async`), and again only when the set of loaded
modules changed (a new module's functions are then in it).  Where kallsyms
hides addresses (kptr_restrict, or not root) every address reads as 0 and
lookups return "" rather than a wrong name.
"""

from __future__ import annotations

import bisect
import threading

# Text symbols: t/T functions, w/W weak ones.
_TEXT_TYPES = frozenset((b"t", b"T", b"w", b"W"))


class KernelSymbols:
    def __init__(self, path: str = "/proc/kallsyms", modules_path: str = "/proc/modules") -> None:
        self.path = path
        self.modules_path = modules_path
        self._addrs: list[int] | None = None
        self._names: list[str] = []
        self._modules = b""  # /proc/modules when kallsyms was read
        self._lock = threading.Lock()
        self._loader: threading.Thread | None = None

    def _read_modules(self) -> bytes:
        try:
            with open(self.modules_path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def _load(self) -> None:
        modules = self._read_modules()
        pairs: list[tuple[int, str]] = []
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError:
            data = b""
        for line in data.splitlines():
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in _TEXT_TYPES:
                addr = int(parts[0], 16)
                if addr:
                    pairs.append((addr, parts[2].decode(errors="replace")))
        pairs.sort()
        self._names = [n for _, n in pairs]
        self._modules = modules
        self._addrs = [a for a, _ in pairs]

    def load_async(self) -> None:
        """Start parsing in a background thread (lookups wait for it)."""
        with self._lock:
            if self._addrs is None and self._loader is None:
                self._loader = threading.Thread(target=self._load_locked, name="kallsyms", daemon=True)
                self._loader.start()

    def _load_locked(self) -> None:
        with self._lock:
            if self._addrs is None:
                self._load()

    def _ensure(self) -> list[int]:
        loader = self._loader
        if loader is not None:
            loader.join()
        with self._lock:
            if self._addrs is None:
                self._load()
            assert self._addrs is not None
            return self._addrs

    def refresh_if_modules_changed(self) -> bool:
        """Re-read kallsyms if a module was loaded or removed since; True if it was."""
        self._ensure()
        with self._lock:
            if self._read_modules() == self._modules:
                return False
            self._load()
            return True

    @property
    def hidden(self) -> bool:
        """No address readable (kptr_restrict, or not root): every lookup is ""."""
        return not self._ensure()

    def _find(self, addr: int) -> tuple[str, int] | None:
        if not addr:
            return None
        addrs = self._ensure()
        i = bisect.bisect_right(addrs, addr) - 1
        if i < 0:
            return None
        return self._names[i], addr - addrs[i]

    def lookup(self, addr: int) -> str:
        """ "nft_do_chain+0x3c2", or "" when unknown."""
        found = self._find(addr)
        return f"{found[0]}+{found[1]:#x}" if found else ""

    def function(self, addr: int) -> str:
        """The function (as kallsyms names it: "ip_rcv_finish_core.constprop.0") holding addr, or ""."""
        found = self._find(addr)
        return found[0] if found else ""

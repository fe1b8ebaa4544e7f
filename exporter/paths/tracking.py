"""Userspace's half of the `tracked` map's bookkeeping (exporter/bpf/paths.bpf.h).

The kernel counts every insert and every delete it makes into GATE_LIVE, and
its hops skip the tracked-map lookup while nothing is followed.  Some packets
are freed where no hop sees them (a pure TCP ACK, a GRO-merged segment), so
their entries would keep that gate open and fill the map.  The reaper deletes
entries older than `stale_ns` and adds what it deleted to GATE_REAPED, the
one slot only userspace writes: the kernel never races it for a count.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable

from exporter.kernel.api import MapHandle
from exporter.model.abi import GATE_SLOTS, Track

# Far longer than any hop sequence inside one host takes; a packet that waits
# longer (a datagram in a slow reader's socket queue) loses only its last hop,
# and its path still ends by the assembler's idle timeout.
STALE_NS = 250_000_000
REAP_EVERY_NS = 100_000_000

_LIVE = GATE_SLOTS["GATE_LIVE"].to_bytes(4, "little")
_REAPED = GATE_SLOTS["GATE_REAPED"].to_bytes(4, "little")


class TrackedReaper:
    def __init__(
        self,
        tracked: MapHandle,
        gate: MapHandle,
        stale_ns: int = STALE_NS,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._tracked = tracked
        self._gate = gate
        self._stale_ns = stale_ns
        self._clock_ns = clock_ns  # CLOCK_MONOTONIC, like bpf_ktime_get_ns()
        self._next_ns = 0
        self.reaped = int.from_bytes(gate.lookup(_REAPED) or bytes(8), "little")

    def live(self) -> int:
        """Entries in the tracked map now, by the kernel's count."""
        live = int.from_bytes(self._gate.lookup(_LIVE) or bytes(8), "little", signed=True)
        return live - self.reaped

    def tick(self) -> int:
        """Reap stale entries (at most every REAP_EVERY_NS); how many went."""
        now = self._clock_ns()
        if now < self._next_ns:
            return 0
        self._next_ns = now + REAP_EVERY_NS
        if self.live() <= 0:
            return 0  # the common case: nothing followed, no map walk
        gone = 0
        for key, raw in self._tracked.items():
            born = Track.from_buffer_copy(raw[: ctypes.sizeof(Track)]).born_ns
            # Only the delete that finds the entry counts: a terminal hop may end it first.
            if now - born > self._stale_ns and self._tracked.delete(key):
                gone += 1
        if gone:
            self.reaped += gone
            self._gate.update(_REAPED, self.reaped.to_bytes(8, "little"))
        return gone

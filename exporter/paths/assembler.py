"""Group the kernel's per-hop events into whole packet paths.

The BPF side emits one HopEvent per hop of every tracked packet; all hops of a
packet share a ``path_id``. The ring buffer is shared by all CPUs, and a hop's
``ts_ns`` is taken *before* its record is reserved, so two hops of the same
packet seen on different CPUs may arrive in the opposite order of their
timestamps. The assembler therefore:

* keeps each path open until it is known to be finished, and orders hops by
  kernel time only when the path is emitted;
* does not emit on a terminal hop (drop / consume) at once, but waits a short
  grace period so that a hop stamped earlier on another CPU can still join;
* ends paths that fall silent (many packets have no terminal hop the kernel
  reports: a UDP datagram read by an application is freed without a
  tracepoint), and bounds every structure it holds, because the number of
  sampled packets is not under our control.

Everything is driven by an injectable monotonic clock (arrival time, not kernel
time), so that tests can run without sleeping.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable

from exporter.model.hops import TERMINAL_HOPS
from exporter.model.path import Hop, HopEvent, Outcome, PacketHeader, Path, SampledBy

__all__ = ["PathAssembler"]


class _OpenPath:
    """A path still being assembled. Mutable and slotted: one is touched per event."""

    __slots__ = ("deadline_ns", "header", "hops", "last_ns", "path_id", "sampled_by", "terminal")

    def __init__(self, path_id: int, header: PacketHeader | None, sampled_by: SampledBy, now_ns: int) -> None:
        self.path_id = path_id
        self.header = header
        self.sampled_by = sampled_by
        self.hops: list[HopEvent] = []
        self.last_ns = now_ns  # arrival time (clock_ns) of the last event, for idle expiry and LRU eviction
        self.terminal = False  # a terminal hop is among self.hops
        self.deadline_ns = 0  # when terminal: emit at or after this clock_ns() value


def _ts_key(ev: HopEvent) -> int:
    return ev.ts_ns


def _outcome(hops: list[HopEvent]) -> tuple[Outcome, str | None]:
    """Outcome of a path whose hops are already in kernel-time order.

    A drop anywhere wins: once freed as a drop the packet is gone, whatever else
    was reported (e.g. a hop from another CPU stamped after the free is noise).
    Delivery to a socket comes next, because after a delivery the skb is freed
    with consume_skb (or silently), so "consumed" would hide the interesting part.
    """
    for h in hops:
        if h.hop is Hop.DROP:
            return Outcome.DROPPED, h.reason
    if any(h.hop in (Hop.DELIVER, Hop.SOCK_QUEUE) for h in hops):
        return Outcome.DELIVERED, None
    if hops:
        last = hops[-1].hop
        if last is Hop.CONSUME:
            return Outcome.CONSUMED, None
        if last is Hop.DEV_XMIT:
            return Outcome.TRANSMITTED, None
    return Outcome.INCOMPLETE, None


class PathAssembler:
    """Assemble HopEvents into Paths and hand each finished Path to ``on_path``.

    Not thread-safe, by design: the agent calls add() and tick() (and flush() at
    shutdown) from its single ring-buffer polling thread, so no lock is paid on
    the hot path. ``on_path`` is called synchronously from add() (capacity
    eviction), tick() and flush(); it must not call back into the assembler.

    Lifecycle of a path:

    * created on the first event of an unknown ``path_id``;
    * on a terminal hop (drop, consume) it becomes *closing*: it stays open for
      ``grace_ns`` more (by clock_ns()) so late-arriving, earlier-stamped hops
      from other CPUs still join, then tick() emits it;
    * with no event for ``idle_timeout_ns`` (by clock_ns()) tick() emits it as is
      and counts ``evicted["idle_timeout"]``;
    * when ``max_open`` paths are held, a new one evicts the least recently
      active path (emitted as is, ``evicted["capacity"]``);
    * flush() emits everything (``evicted["shutdown"]`` for non-terminal ones).

    ``evicted`` reasons: idle_timeout, capacity, too_many_hops (one per hop not
    kept), late_hop (event for an already emitted path), shutdown, and
    internal_error (an event or path lost to an unexpected error). Sink
    exceptions are counted in ``sink_errors``. add() and tick() never raise
    (Exception subclasses; KeyboardInterrupt and SystemExit do propagate).
    """

    def __init__(
        self,
        on_path: Callable[[Path], None],
        *,
        idle_timeout_ns: int = 2_000_000_000,
        grace_ns: int = 50_000_000,
        max_open: int = 4096,
        max_hops: int = 64,
        closed_memory: int = 4096,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if idle_timeout_ns <= 0:
            raise ValueError(f"idle_timeout_ns must be > 0, got {idle_timeout_ns}")
        if grace_ns < 0:
            raise ValueError(f"grace_ns must be >= 0, got {grace_ns}")
        if max_open < 1:
            raise ValueError(f"max_open must be >= 1, got {max_open}")
        if max_hops < 1:
            raise ValueError(f"max_hops must be >= 1, got {max_hops}")
        if closed_memory < 0:
            raise ValueError(f"closed_memory must be >= 0, got {closed_memory}")
        self._on_path = on_path
        self._idle_timeout_ns = idle_timeout_ns
        self._grace_ns = grace_ns
        self._max_open = max_open
        self._max_hops = max_hops
        self._closed_memory = closed_memory
        self._clock_ns = clock_ns

        # Every held path (open or closing), least recently active first: move_to_end()
        # on each event keeps it an LRU, so both capacity eviction (popitem(last=False))
        # and the idle scan (stop at the first path not yet idle) touch only what expires.
        self._open: OrderedDict[int, _OpenPath] = OrderedDict()
        # Closing paths (also in _open), in deadline order. A deadline is clock_ns() +
        # a constant grace at the terminal hop, so with a monotonic clock insertion order
        # is deadline order and tick() can stop at the first one not yet due.
        self._closing: OrderedDict[int, _OpenPath] = OrderedDict()
        # Recently emitted path ids (LRU, bounded): a hop for one of them is dropped
        # instead of re-opening the path, which would emit a second, partial path.
        self._closed: OrderedDict[int, None] = OrderedDict()

        self.emitted: Counter[Outcome] = Counter()
        self.evicted: Counter[str] = Counter()
        self.sink_errors = 0

    @property
    def open_paths(self) -> int:
        """Paths currently held (open or closing)."""
        return len(self._open)

    # -- hot path ---------------------------------------------------------------------------------

    def add(self, ev: HopEvent) -> None:
        """Take one hop. O(1) amortised; never raises (errors are counted, the event dropped)."""
        try:
            self._add(ev)
        except Exception:  # noqa: BLE001 - the polling loop must survive any bad record
            self.evicted["internal_error"] += 1

    def _add(self, ev: HopEvent) -> None:
        # Read everything that could fail before mutating any state, so an
        # internal error drops the event without leaving a half-updated path.
        pid = ev.path_id
        terminal = ev.hop in TERMINAL_HOPS
        header = ev.header
        sampled_by = ev.sampled_by
        now = self._clock_ns()

        op = self._open.get(pid)
        if op is None:
            if pid in self._closed:
                self._closed.move_to_end(pid)  # still trickling in: keep remembering it
                self.evicted["late_hop"] += 1
                return
            if len(self._open) >= self._max_open:
                _, oldest = self._open.popitem(last=False)
                self._closing.pop(oldest.path_id, None)
                self.evicted["capacity"] += 1
                self._emit(oldest)
            op = _OpenPath(pid, header, sampled_by, now)
            self._open[pid] = op
        else:
            self._open.move_to_end(pid)
            op.last_ns = now
            if op.header is None:
                # The kernel sets the header on the first hop, which may arrive after
                # a later hop from another CPU: take the first one that carries it.
                op.header = header

        if len(op.hops) >= self._max_hops:
            # A looping packet can produce hops without end. Keep the first max_hops,
            # except that the hop telling how the packet ended is the one an operator
            # needs most: a first terminal hop takes the place of the most recently
            # received stored hop, so the path still reads DROPPED (with its reason)
            # and the length bound holds. Either way one hop is lost and counted.
            self.evicted["too_many_hops"] += 1
            if not terminal or op.terminal:
                return
            op.hops[-1] = ev
        else:
            op.hops.append(ev)

        if terminal and not op.terminal:
            # The first terminal hop fixes the deadline; later hops (terminal or not)
            # join until then but do not extend it, so a path is never held longer
            # than grace_ns after it ended.
            op.terminal = True
            op.deadline_ns = now + self._grace_ns
            self._closing[pid] = op

    # -- periodic ---------------------------------------------------------------------------------

    def tick(self) -> None:
        """Emit closing paths whose grace has passed, then paths idle for idle_timeout_ns. Never raises.

        Cost is O(paths emitted): both scans start at the oldest entry and stop at
        the first one not yet due.
        """
        try:
            now = self._clock_ns()
            closing = self._closing
            while closing:
                op = next(iter(closing.values()))
                if now < op.deadline_ns:
                    break
                closing.popitem(last=False)
                del self._open[op.path_id]
                self._emit(op)

            held = self._open
            idle = self._idle_timeout_ns
            while held:
                op = next(iter(held.values()))
                if now - op.last_ns < idle:
                    break
                held.popitem(last=False)
                if op.terminal:
                    # Only reachable when idle_timeout_ns < grace_ns: it ended, it is
                    # just being emitted a little early; not an idle end.
                    closing.pop(op.path_id, None)
                else:
                    self.evicted["idle_timeout"] += 1
                self._emit(op)
        except Exception:  # noqa: BLE001 - the polling loop must survive; _emit already guards the sink
            self.evicted["internal_error"] += 1

    def flush(self) -> None:
        """Emit every held path now (agent shutdown); non-terminal ones count evicted["shutdown"]."""
        self._closing.clear()
        while self._open:
            _, op = self._open.popitem(last=False)
            if not op.terminal:
                self.evicted["shutdown"] += 1
            self._emit(op)

    # -- emission ---------------------------------------------------------------------------------

    def _emit(self, op: _OpenPath) -> None:
        """Finish a path already removed from _open/_closing and hand it to the sink."""
        self._remember_closed(op.path_id)
        try:
            hops = sorted(op.hops, key=_ts_key)  # stable: equal stamps keep arrival order
            outcome, reason = _outcome(hops)
            path = Path(
                path_id=op.path_id,
                header=op.header,
                hops=hops,
                outcome=outcome,
                drop_reason=reason,
                sampled_by=op.sampled_by,
            )
        except Exception:  # noqa: BLE001 - e.g. a record with a non-integer ts_ns: lose this path only
            self.evicted["internal_error"] += 1
            return
        self.emitted[outcome] += 1
        try:
            self._on_path(path)
        except Exception:  # noqa: BLE001 - a failing exporter must not stop path assembly
            self.sink_errors += 1

    def _remember_closed(self, pid: int) -> None:
        if self._closed_memory == 0:
            return
        self._closed[pid] = None
        self._closed.move_to_end(pid)
        if len(self._closed) > self._closed_memory:
            self._closed.popitem(last=False)

"""Sampling windows: the path hooks are attached only while a window samples (issue 12).

An attached tracepoint costs every packet its dispatch (35-40 ns here, six path hooks on a delivered
packet) whether or not the packet is followed; a detached one costs a static branch.  So the agent
attaches the path hooks around short windows and leaves only the always-on programs (drop counting
and capture, the verdict counters) attached in between.  One window, period P and length W:

    open_at - lead     attach the path hooks; arm the kernel's window (path_window): 1 in N while
                       CLOCK_MONOTONIC is in [open_at, open_at + W)
    open_at            entry hops start paths: the kernel reads its clock, so the window opens
    open_at + W        and closes on time to the nanosecond on every CPU, however late the agent's
                       thread runs; from the close no new path starts
    ... linger         packets already followed keep every hop (the entry hops continue paths too:
                       a packet crossing a veth is received again), until none is tracked
    detach             the path hooks come off

The linger is bounded by the reaper's stale age and one reap (exporter/paths/tracking.py): a packet
followed for longer is expired by the reaper whether or not windows are on, and counted there
(pktpath_tracking_lost_total{reason="expired"}), its path ending incomplete.  So a window's close
cuts no path that continuous sampling would have kept.

Windows open at the multiples of P on the wall clock, so agents on different nodes open theirs
together and their deterministic trace ids meet: a packet sampled on two nodes is the same trace.
The tolerance is the nodes' clock offset: with NTP (milliseconds) nothing is lost; an offset of d
seconds loses the d/W of each window the two agents do not share.

The path budget holds inside windows: a window may start max_paths_per_second x W new paths (its
quota, counted in the kernel per window number, path_window.max_paths), so no second ever starts
more paths than the budget, and the ring buffer and the agent never see a burst above what
continuous sampling at the budget gives them.  N adapts (sampling.adaptive): a window's
sampled candidates (paths started plus paths its quota refused) measure the matching traffic at the N
in force, and the next window takes the N that makes the expected candidates of a whole window four
times the quota: in steady traffic the quota is spent a quarter of the way through the window, which
then closes (below).  So the quota, not the estimate, decides how many paths a window yields, a window
still yields it when the traffic falls to a quarter, and busy traffic pays the hooks for a quarter of
the window; one_in is the smallest N.  The hash threshold is nested (a packet chosen at N is chosen
at every smaller N), so nodes with different N still agree on the packets both follow.

A window also closes as soon as its quota is spent: the controller polls the count of paths started
every QUOTA_POLL_S, and once the window has started its quota it disarms the kernel's window and
goes on to the linger as at the end.  Past that point every candidate would be refused, and each one
still pays the entry hooks' header read and hash, so at a window's first N (one_in, before any
estimate of the traffic) or after a surge a flood would pay the hooks for the whole window to start
nothing: closed early, it pays them for about one poll.  The window's time is then the time it
really sampled, in the weight and in the next N alike.

The published weight of a rate-sampled path is N x P / W' (W' the time the window really sampled)
times candidates/started of that window when its budget refused some: each path stands for that many
matching packets of the whole period, so sampled counts scale back without bias.

The weight uses the time the window really sampled: from the opening, or from when the hooks came
on if attaching overran the lead (a late window), to the close.

The controller runs on its own thread: a function hook's detach waits for RCU grace periods
(Engine.detach_hops), which must not hold up scrapes or the event pipeline.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from exporter.config import Config
from exporter.config.values import MAX_ONE_IN
from exporter.decoders.counters import KernelStats
from exporter.kernel.api import MapHandle
from exporter.model import abi
from exporter.paths.kernel_config import below
from exporter.paths.tracking import REAP_EVERY_NS, STALE_NS, TrackedReaper

log = logging.getLogger(__name__)

# The expected candidates of a whole window, over its quota.  Above 1, the quota binds in steady
# traffic (a window yields its quota) and the window closes once it is spent, at 1/AIM of its length:
# the path hooks, which cost every packet of busy traffic the same at any N, are on for that share.
# Measured in a drop flood here (docs/benchmarks.md, ninth pass): the flood slows by about a fifth
# while they are on, for 0.53 s of each 10 s at 2 and 0.34 s at 4 (the lead and the edges are the
# rest); 1.1 kept them on for most of the second.  4 also keeps a window's yield when the traffic
# falls to a quarter between windows.  Larger would bunch a window's paths into a shorter burst (the
# quota in W/AIM: 4,000 paths/s at the defaults) for the ring buffer and the agent to absorb.
AIM_OVER_BUDGET = 4.0
# Attach at least this long before a window opens, and longer when the last attach took longer
# (twice its time): the six tracepoint hooks attach in about 2 ms here, a function hook's first
# attach (an fentry trampoline, a kprobe) takes milliseconds here and up to 0.3 s each in an emulated
# guest.  Every millisecond of lead is a millisecond of hooks on every packet for nothing (a drop
# flood slows by a fifth while they are on), so the floor is small: 50 ms cost a flood 0.1 point.  An
# attach that still overruns opens the window late, sampling from when the hooks are on, weighted
# for it.
LEAD_S = 0.01
# A window whose hooks attached this much after its opening counts as late.
LATE_S = 0.01
# Read the counters this long after the kernel closed the window: a path started at the last
# nanosecond has been counted by then.
CLOSE_MARGIN_S = 0.005
# How often the linger polls the tracked count.
LINGER_POLL_S = 0.01
# How often an open window's paths started are read, to close it once its quota is spent: a flood
# at the first window's N spends the quota within milliseconds, then pays the hooks until the poll.
QUOTA_POLL_S = 0.01
_ZERO = (0).to_bytes(4, "little")
MAX_WINDOW_QUOTA = 2**32 - 1  # path_window.max_paths is a u32


@dataclass(frozen=True)
class WindowSettings:
    period_s: int
    length_s: int
    adaptive: bool
    one_in: int  # the smallest N (0: no rate sampling)
    budget_per_s: int  # sampling.max_paths_per_second (0: unlimited, then N stays one_in)
    linger_s: float = (STALE_NS + REAP_EVERY_NS) / 1e9
    lead_s: float = LEAD_S

    @classmethod
    def from_config(cls, cfg: Config) -> WindowSettings:
        s = cfg.sampling
        return cls(
            period_s=s.window_period_seconds,
            length_s=s.window_seconds,
            adaptive=s.adaptive,
            one_in=s.one_in,
            budget_per_s=s.max_paths_per_second,
        )

    @property
    def quota(self) -> int:
        """New rate-sampled paths one window may start: the budget over its length (0: unlimited)."""
        return min(self.budget_per_s * self.length_s, MAX_WINDOW_QUOTA)

    @property
    def target(self) -> int:
        """Candidates a window aims at (0: no aim, N stays one_in)."""
        return math.ceil(self.quota * AIM_OVER_BUDGET) if self.budget_per_s else 0


def lead_before(last_attach_s: float, period_s: int, length_s: int, least_s: float = LEAD_S) -> float:
    """How long before an opening to attach: `least_s`, or twice what the last attach took if that
    is more, never more than half the gap between windows."""
    return min(max(least_s, 2 * last_attach_s), (period_s - length_s) / 2)


def next_open(wall_s: float, period_s: int) -> float:
    """The first multiple of `period_s` seconds since the epoch strictly after `wall_s`."""
    return (math.floor(wall_s / period_s) + 1) * period_s


def adapt_one_in(one_in: int, candidates: int, s: WindowSettings, sampled_ns: int | None = None) -> int:
    """The next window's N, from the last window's candidates at `one_in` over the `sampled_ns` it
    really sampled (the whole window when None): the rate those say the matching traffic has, over
    a whole window, divided by the target; never below s.one_in, never above abi's limit."""
    if not s.adaptive or not s.one_in or not s.target:
        return s.one_in
    window_ns = s.length_s * 1_000_000_000
    expected = float(candidates)  # over a whole window
    if sampled_ns is not None and 0 < sampled_ns < window_ns:
        expected = candidates * window_ns / sampled_ns
    wanted = math.ceil(expected * one_in / s.target) if candidates else 1
    return max(s.one_in, min(wanted, MAX_ONE_IN))


class HookSwitch(Protocol):
    """The path hooks as one switch (exporter/kernel/facade.py: PathHooks, over the engine)."""

    def attach(self) -> tuple[int, list[str]]:
        """Attach every path hook detached now: (how many attached, why each other one failed)."""
        ...

    def detach(self) -> int:
        """Detach every path hook attached now; how many."""
        ...

    def attach_timed_s(self) -> float | None:
        """How long attaching them took when the switch last timed it outside a window (the
        kprobe.multi links' trial at the first detach), or None."""
        ...


class WindowKernel(Protocol):
    """What the controller does to the kernel (KernelWindow, over the real maps)."""

    def attach_path_hooks(self) -> tuple[int, list[str]]: ...

    def detach_path_hooks(self) -> int: ...

    def attach_timed_s(self) -> float | None:
        """HookSwitch.attach_timed_s."""
        ...

    def arm(self, one_in: int, number: int, open_ns: int, close_ns: int, max_paths: int) -> None:
        """Sample 1 in `one_in` while CLOCK_MONOTONIC is in [open_ns, close_ns), starting at most
        `max_paths` paths (0: unlimited)."""
        ...

    def disarm(self, number: int) -> None:
        """No window until the next arm()."""
        ...

    def rate_counts(self) -> tuple[int, int]:
        """(paths started by the rate sample, starts its budget refused), since the agent started."""
        ...

    def tracked_live(self) -> int:
        """Packets followed now."""
        ...


class KernelWindow:
    """WindowKernel over the kernel's maps: `path_window` (pktpath.h), the stats, the tracked count."""

    def __init__(self, hooks: HookSwitch, window: MapHandle, stats: KernelStats, tracked: TrackedReaper) -> None:
        self._hooks = hooks
        self._window = window
        self._stats = stats
        self._tracked = tracked
        self._started = abi.STATS.index("STAT_SAMPLED_RATE")
        self._refused = abi.STATS.index("STAT_PATH_BUDGET")

    def attach_path_hooks(self) -> tuple[int, list[str]]:
        return self._hooks.attach()

    def detach_path_hooks(self) -> int:
        return self._hooks.detach()

    def attach_timed_s(self) -> float | None:
        return self._hooks.attach_timed_s()

    def arm(self, one_in: int, number: int, open_ns: int, close_ns: int, max_paths: int) -> None:
        value = abi.PathWindow(
            sample_below=below(one_in),
            open_ns=open_ns,
            close_ns=close_ns,
            one_in=one_in,
            number=number,
            max_paths=max_paths,
        )
        self._window.update(_ZERO, bytes(value))

    def disarm(self, number: int) -> None:
        self._window.update(_ZERO, bytes(abi.PathWindow(number=number)))

    def rate_counts(self) -> tuple[int, int]:
        # Two slots, not the whole array: an open window polls this (QUOTA_POLL_S).
        return self._stats.read_slot(self._started), self._stats.read_slot(self._refused)

    def tracked_live(self) -> int:
        return self._tracked.live()


@dataclass(frozen=True)
class ClosedWindow:
    """One window as it happened, for path weights and the metrics."""

    number: int
    opened_ns: int  # CLOCK_MONOTONIC, bpf_ktime_get_ns()'s clock: a path's first-hop time compares
    closed_ns: int
    one_in: int
    started: int
    refused: int
    weight: float  # packets of the period each rate-sampled path of this window stands for


@dataclass
class WindowCounters:
    """What the collector serves (pktpath_sampling_window*); written by the controller thread only."""

    opened: int = 0
    missed: int = 0  # windows that could not open (no path hook attached)
    late: int = 0  # windows that opened late because attaching overran the lead
    quota_spent: int = 0  # windows closed before their end because their quota was spent
    open: bool = False
    hooks_attached: bool = False
    one_in: int = 0  # N of the window open now, else of the next one
    weight: float = 0.0  # of the last closed window (0 before the first)
    last_attach_s: float = 0.0
    attach_seconds: float = 0.0  # sums of the time the attach and detach calls blocked
    attach_count: int = 0
    detach_seconds: float = 0.0
    detach_count: int = 0
    # The time the path hooks were on: from the start of an attach (the first hook comes on then) to
    # the end of the detach (the last one is off), summed; plus the running span while they are on.
    # The share of time they are on is what they cost busy traffic (docs/configuration.md).
    hooks_on_closed_s: float = 0.0
    hooks_on_since_ns: int | None = None
    # The scrape thread reads the sum and the running span together: without the lock it could
    # see the span closed but not yet added, and the counter would step back.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    history: deque[ClosedWindow] = field(default_factory=lambda: deque(maxlen=64))


class WindowController:
    """Opens and closes windows on time, on its own thread, until stop()."""

    def __init__(
        self,
        settings: WindowSettings,
        kernel: WindowKernel,
        *,
        wall: Callable[[], float] = time.time,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        """`wall`, `monotonic_ns`, `wait` (sleep up to that long, True once stopped): the clocks, for
        tests to drive."""
        self.settings = settings
        self._kernel = kernel
        self._wall = wall
        self._mono_ns = monotonic_ns
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._thread: threading.Thread | None = None
        self._detached_at_start = False
        self.counters = WindowCounters(one_in=settings.one_in)

    # -- life cycle -------------------------------------------------------------------------------

    def start(self, attached_since_ns: int | None = None) -> None:
        """Take the path hooks off now, in the caller's thread (the engine attached every hop at
        start, the first probe as early as possible), then run the windows on a thread of their own:
        from the moment this returns, no path hook is attached outside a window.
        `attached_since_ns` (monotonic): when the engine began attaching them, so that their time
        on counts the start too."""
        with self.counters.lock:
            self.counters.hooks_on_since_ns = attached_since_ns
        self._take_hooks_off()
        self._detached_at_start = True
        self._thread = threading.Thread(target=self.run, name="pktpath-windows", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def update(self, settings: WindowSettings) -> None:
        """A reload: the next window uses these (the one open now finishes as it began)."""
        self.settings = settings
        if not self.counters.open:
            self.counters.one_in = max(self.counters.one_in, settings.one_in) if settings.adaptive else settings.one_in

    def run(self) -> None:
        # Until the first window, only the always-on programs stay (start() may have seen to it).
        if not self._detached_at_start:
            self._take_hooks_off()
        while not self._stop.is_set():
            s = self.settings
            lead = self.lead_s()
            open_at = next_open(self._wall() + lead, s.period_s)
            if self._sleep_until(open_at - lead):
                break
            self.window(open_at)
        self._kernel.disarm(self.counters.opened)
        self._detach()

    # -- one window -------------------------------------------------------------------------------

    def window(self, open_at: float) -> ClosedWindow | None:
        """Attach, arm the kernel's window for [open_at, open_at + W) (wall clock), wait for it to
        close, linger, detach."""
        s, c = self.settings, self.counters
        attached, failed = self._attach()
        for problem in failed:
            log.warning("sampling window: %s", problem)
        if not attached:
            c.missed += 1
            log.warning("sampling window at %.0f not opened: no path hook could attach", open_at)
            return None
        # The kernel keeps time in CLOCK_MONOTONIC: the wall-clock edges, converted once.
        now_wall, now_ns = self._wall(), self._mono_ns()
        open_ns = now_ns + round((open_at - now_wall) * 1e9)
        close_ns = open_ns + s.length_s * 1_000_000_000
        if self._stop.is_set() or now_ns >= close_ns:
            c.missed += 0 if self._stop.is_set() else 1
            self._detach()
            return None
        if now_ns > open_ns + LATE_S * 1e9:
            c.late += 1  # the hooks came on after the opening: the window samples from now
        sampled_from_ns = max(open_ns, now_ns)
        one_in = c.one_in or s.one_in
        started0, refused0 = self._kernel.rate_counts()
        c.opened += 1
        number = c.opened
        self._kernel.arm(one_in, number, open_ns, close_ns, s.quota)
        self._sleep_until(open_at)
        c.open = True
        closed_ns = self._sample(open_at + s.length_s, number, close_ns, started0, s.quota)
        c.open = False
        started1, refused1 = self._kernel.rate_counts()
        started, refused = started1 - started0, refused1 - refused0
        closed = ClosedWindow(
            number,
            sampled_from_ns,
            closed_ns,
            one_in,
            started,
            refused,
            weight_of(one_in, s.period_s, closed_ns - sampled_from_ns, started, refused),
        )
        c.history.append(closed)
        c.weight = closed.weight
        c.one_in = adapt_one_in(one_in, started + refused, s, closed_ns - sampled_from_ns)
        self._linger(closed_ns)
        return closed

    def _sample(self, close_at: float, number: int, close_ns: int, started0: int, quota: int) -> int:
        """While the window samples: until the kernel's close, or until `quota` (the one it was
        armed with: a reload meanwhile applies from the next window) is spent, then disarmed now.
        Returns when it stopped sampling (monotonic ns); its counts are final when this returns."""
        while quota and not self._stop.is_set():
            left = close_at - self._wall()
            if left <= QUOTA_POLL_S:
                break
            if self._wait(QUOTA_POLL_S):
                break
            if self._kernel.rate_counts()[0] - started0 >= quota:
                cut_ns = self._mono_ns()
                if cut_ns >= close_ns:
                    break
                self._kernel.disarm(number)
                self.counters.quota_spent += 1
                # A path start in flight on another CPU when the window was disarmed is counted by then.
                self._wait(CLOSE_MARGIN_S)
                return cut_ns
        # Past the kernel's close (the agent's clock read is late, never early) before counting.
        self._sleep_until(close_at + CLOSE_MARGIN_S)
        self._kernel.disarm(number)
        return close_ns

    def lead_s(self) -> float:
        """How long before an opening to attach (lead_before)."""
        s = self.settings
        return lead_before(self.counters.last_attach_s, s.period_s, s.length_s, s.lead_s)

    def weight(self) -> float:
        """The rate-sampled weight to publish: the last closed window's, or before the first one
        closes, what N x period / window promises."""
        c, s = self.counters, self.settings
        return c.weight or weight_of(c.one_in, s.period_s, s.length_s * 1_000_000_000, 0, 0)

    def weight_at(self, first_hop_ns: int) -> float:
        """The weight of a rate-sampled path whose first hop was at `first_hop_ns` (monotonic):
        its window's, or the last closed window's while its own is still open."""
        for w in reversed(self.counters.history):
            if w.opened_ns <= first_hop_ns <= w.closed_ns:
                return w.weight
        return self.counters.weight

    # -- steps ------------------------------------------------------------------------------------

    def _take_hooks_off(self) -> None:
        """The first detach, of the hooks the engine attached at start."""
        self._detach()
        # Until a window's attach has been timed, the kernel side's own timing of one stands in
        # for it (the kprobe.multi links are tried once at the first detach), else the start's
        # detach: detaching a function hook waits for grace periods, so it takes at least as long
        # as attaching; without this the first windows of a slow machine (an emulated guest:
        # seconds) open with the LEAD_S lead and are missed.  The start's detach may be far longer
        # than a window's edges will be (per-hook trampolines before the links took over: 2 s in
        # the 6.12 guest, then a lead of 4 s of hooks on for the first window).
        timed = self._kernel.attach_timed_s()
        self.counters.last_attach_s = timed if timed is not None else self.counters.detach_seconds

    def _linger(self, closed_ns: int) -> None:
        bound_ns = closed_ns + int(self.settings.linger_s * 1e9)
        while self._kernel.tracked_live() > 0 and self._mono_ns() < bound_ns and not self._stop.is_set():
            self._wait(LINGER_POLL_S)
        self._detach()

    def _attach(self) -> tuple[int, list[str]]:
        began = self._mono_ns()
        with self.counters.lock:
            if self.counters.hooks_on_since_ns is None:
                self.counters.hooks_on_since_ns = began
        attached, failed = self._kernel.attach_path_hooks()
        self.counters.last_attach_s = (self._mono_ns() - began) / 1e9
        self.counters.attach_seconds += self.counters.last_attach_s
        self.counters.attach_count += 1
        self.counters.hooks_attached = attached > 0
        return attached, failed

    def _detach(self) -> None:
        c = self.counters
        began = self._mono_ns()
        detached = self._kernel.detach_path_hooks()
        ended = self._mono_ns()
        if detached:
            c.detach_seconds += (ended - began) / 1e9
            c.detach_count += 1
        with c.lock:
            if c.hooks_on_since_ns is not None:
                c.hooks_on_closed_s += (ended - c.hooks_on_since_ns) / 1e9
                c.hooks_on_since_ns = None
        c.hooks_attached = False

    def hooks_on_seconds(self) -> float:
        """The time the path hooks have been on so far, the span running now included."""
        return hooks_on_seconds(self.counters, self._mono_ns())

    def _sleep_until(self, wall_s: float) -> bool:
        """Sleep until the wall clock reads `wall_s` (re-reading it: a step of the clock moves the
        wake-up); True if stop() came first."""
        while True:
            left = wall_s - self._wall()
            if left <= 0:
                return self._stop.is_set()
            if self._wait(min(left, 1.0)):
                return True


def hooks_on_seconds(c: WindowCounters, now_ns: int) -> float:
    """The time the path hooks have been on until `now_ns` (monotonic), the running span included."""
    with c.lock:
        running = 0 if c.hooks_on_since_ns is None else max(0, now_ns - c.hooks_on_since_ns)
        return c.hooks_on_closed_s + running / 1e9


def weight_of(one_in: int, period_s: int, open_ns: int, started: int, refused: int) -> float:
    """Matching packets of one period each rate-sampled path of a window stands for: 1 in N while
    open, scaled from the time it was open to the period, and by what its budget refused."""
    if not one_in or open_ns <= 0:
        return 0.0
    weight = one_in * period_s * 1e9 / open_ns
    if started and refused:
        weight *= (started + refused) / started
    return weight

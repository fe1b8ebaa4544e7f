"""Sampling windows on a driven clock: when hooks attach, open, close and detach; how N adapts; the
weights.  The same controller runs against the real kernel in tests/kernel/test_windows.py."""

from __future__ import annotations

import math

import pytest

from exporter.paths.tracking import REAP_EVERY_NS, STALE_NS
from exporter.paths.windows import (
    AIM_OVER_BUDGET,
    CLOSE_MARGIN_S,
    LEAD_S,
    QUOTA_POLL_S,
    WindowController,
    WindowSettings,
    adapt_one_in,
    hooks_on_seconds,
    next_open,
    weight_of,
)

EPOCH = 1_800_000_003.25  # a wall-clock start that is no multiple of any period used here


class Clock:
    """Wall and monotonic time that only move when the controller waits."""

    def __init__(self, wall: float = EPOCH) -> None:
        self.wall_s = wall
        self.mono_ns = 5_000_000_000
        self.stop_at: float | None = None

    def wall(self) -> float:
        return self.wall_s

    def monotonic_ns(self) -> int:
        return self.mono_ns

    def advance(self, seconds: float) -> None:
        self.wall_s += seconds
        self.mono_ns += int(seconds * 1e9)

    def wait(self, seconds: float) -> bool:
        self.advance(seconds)
        return self.stop_at is not None and self.wall_s >= self.stop_at


class Traffic:
    """The kernel side: hooks, the window threshold, and matching packets at a steady rate, of which
    the open window samples 1 in N and its quota (path_window.max_paths) keeps some."""

    def __init__(
        self,
        clock: Clock,
        pps: float = 0.0,
        attach_s: float = 0.0,
        attach_fails: bool = False,
        detach_s: float = 0.0,
        attach_timed_s: float | None = None,
    ) -> None:
        self.clock = clock
        self.pps = pps
        self.max_paths = 0
        self.attach_s = attach_s
        self.attach_fails = attach_fails
        self.detach_s = detach_s
        self.timed_s = attach_timed_s
        self.events: list[tuple[float, str, int]] = []
        self.attached = True  # the engine attached everything at start
        self.one_in = 0
        self.open_ns = self.close_ns = self.armed_at_ns = 0
        self.started = self.refused = 0
        self.live_until = 0.0  # wall time until which a followed packet stays tracked
        self.live_forever = False

    def attach_path_hooks(self) -> tuple[int, list[str]]:
        self.clock.advance(self.attach_s)
        if self.attach_fails:
            return 0, ["net_dev_queue: attach failed: Operation not permitted"]
        self.attached = True
        self.events.append((self.clock.wall_s, "attach", 0))
        return 6, []

    def detach_path_hooks(self) -> int:
        self.clock.advance(self.detach_s)
        was, self.attached = self.attached, False
        if was:
            self.events.append((self.clock.wall_s, "detach", 0))
        return 6 if was else 0

    def attach_timed_s(self) -> float | None:
        return self.timed_s

    def arm(self, one_in: int, number: int, open_ns: int, close_ns: int, max_paths: int) -> None:
        assert self.attached, "a window armed with its hooks detached"
        assert open_ns < close_ns and not self.one_in
        self.one_in, self.open_ns, self.close_ns, self.max_paths = one_in, open_ns, close_ns, max_paths
        self.events.append((self.clock.wall_s + (open_ns - self.clock.mono_ns) / 1e9, "open", one_in))
        self.events.append((self.clock.wall_s + (close_ns - self.clock.mono_ns) / 1e9, "close", 0))
        self.armed_at_ns = self.clock.mono_ns

    def _window_counts(self) -> tuple[int, int]:
        """(started, refused) of the armed window so far."""
        until = min(self.clock.mono_ns, self.close_ns)
        open_s = max(0, until - max(self.open_ns, self.armed_at_ns)) / 1e9
        candidates = round(self.pps * open_s / self.one_in)
        kept = min(candidates, self.max_paths) if self.max_paths else candidates
        return kept, candidates - kept

    def disarm(self, number: int) -> None:
        if not self.one_in:
            return
        kept, refused = self._window_counts()
        assert self.clock.mono_ns >= self.close_ns or (self.max_paths and kept >= self.max_paths), (
            "disarmed before the kernel's close with quota left"
        )
        self.started += kept
        self.refused += refused
        self.one_in = 0
        self.events.append((self.clock.wall_s, "disarm", 0))

    def rate_counts(self) -> tuple[int, int]:
        if not self.one_in:
            return self.started, self.refused
        kept, refused = self._window_counts()
        return self.started + kept, self.refused + refused

    def tracked_live(self) -> int:
        return 3 if self.live_forever or self.clock.wall_s < self.live_until else 0


def settings(**kw: object) -> WindowSettings:
    base: dict[str, object] = {"period_s": 10, "length_s": 1, "adaptive": True, "one_in": 1, "budget_per_s": 1000}
    return WindowSettings(**{**base, **kw})  # type: ignore[arg-type]


def run(s: WindowSettings, kernel: Traffic, clock: Clock, seconds: float) -> WindowController:
    ctl = WindowController(s, kernel, wall=clock.wall, monotonic_ns=clock.monotonic_ns, wait=clock.wait)
    clock.stop_at = clock.wall_s + seconds
    ctl.run()
    return ctl


def kinds(kernel: Traffic, kind: str) -> list[float]:
    return [t for t, k, _ in kernel.events if k == kind]


def test_next_open_is_the_next_multiple_of_the_period() -> None:
    assert next_open(1_000.0, 10) == 1_010.0
    assert next_open(1_009.999, 10) == 1_010.0
    assert next_open(1_003.5, 7) == 1_008.0
    for wall in (0.0, 12.3, 1e9 + 0.5):
        at = next_open(wall, 10)
        assert at > wall and at - wall <= 10 and at % 10 == 0


def test_windows_open_on_the_wall_clock_multiples_and_hooks_are_off_in_between() -> None:
    clock = Clock()
    kernel = Traffic(clock)
    s = settings(period_s=10, length_s=2)
    ctl = run(s, kernel, clock, 65)
    opens, closes = kinds(kernel, "open"), kinds(kernel, "close")
    assert opens == [EPOCH - 3.25 + 10 * k for k in range(1, 7)]  # ...10, ...20, ... ...60
    assert [c - o for o, c in zip(opens, closes, strict=True)] == [2.0] * 6
    assert ctl.counters.opened == 6 and ctl.counters.missed == ctl.counters.late == 0
    # The hooks: detached first thing, attached lead seconds before each opening, detached at the
    # close (nothing is followed here, so no linger); never attached at any other time.
    assert kernel.events[0][1] == "detach"
    assert kinds(kernel, "attach") == pytest.approx([o - s.lead_s for o in opens])
    assert kinds(kernel, "detach")[1:7] == pytest.approx([c + CLOSE_MARGIN_S for c in closes])
    assert not kernel.attached  # stopped: the hooks are off


def test_a_packet_followed_at_the_close_keeps_its_hooks_until_its_path_ends() -> None:
    clock = Clock()
    kernel = Traffic(clock)
    s = settings(period_s=10, length_s=1)
    ctl = WindowController(s, kernel, wall=clock.wall, monotonic_ns=clock.monotonic_ns, wait=clock.wait)
    open_at = next_open(clock.wall_s, 10)
    kernel.live_until = open_at + 1 + 0.05  # still tracked 50 ms after the close
    ctl.window(open_at)
    close, detach = kinds(kernel, "close")[0], kinds(kernel, "detach")[0]
    assert 0.05 - 1e-6 <= detach - close <= 0.05 + 0.011  # polled every 10 ms


def test_the_linger_lasts_at_most_until_the_reaper_has_expired_what_is_left() -> None:
    clock = Clock()
    kernel = Traffic(clock)
    kernel.live_forever = True
    s = settings()
    ctl = WindowController(s, kernel, wall=clock.wall, monotonic_ns=clock.monotonic_ns, wait=clock.wait)
    ctl.window(next_open(clock.wall_s, 10))
    close, detach = kinds(kernel, "close")[0], kinds(kernel, "detach")[0]
    assert detach - close == pytest.approx(s.linger_s, abs=0.011)
    assert s.linger_s * 1e9 == STALE_NS + REAP_EVERY_NS


def test_at_defaults_100k_packets_per_second_yield_at_least_100_paths_per_second() -> None:
    """The issue's floor: the window's N rises until the window fills its quota, the budget over the
    window (1000/s x 1 s): 1000 paths every 10 s."""
    clock = Clock()
    kernel = Traffic(clock, pps=100_000)
    ctl = run(settings(), kernel, clock, 300)
    windows = list(ctl.counters.history)
    # Nothing known yet: one_in.  The quota is spent within the first poll, and the window closes
    # there: the hooks do not stay on for a second that could start nothing.
    assert windows[0].one_in == 1 and windows[0].started == 1_000
    first_ns = windows[0].closed_ns - windows[0].opened_ns
    assert first_ns <= (QUOTA_POLL_S + 0.001) * 1e9
    assert windows[0].weight == pytest.approx(100_000 * 10 / 1_000, rel=0.02)  # packets per path
    assert ctl.counters.quota_spent >= 1
    steady = windows[3:]
    assert all(w.one_in == math.ceil(100_000 / (1_000 * AIM_OVER_BUDGET)) for w in steady)
    paths_per_s = sum(w.started for w in steady) / (len(steady) * 10)
    assert paths_per_s >= 100
    assert paths_per_s == pytest.approx(100, rel=0.01)  # the quota binds: no burst above the budget


def test_a_window_whose_quota_is_spent_closes_then_and_its_hooks_come_off() -> None:
    """A flood at the first window's N spends the quota at once: the window is disarmed at the next
    poll and, nothing being followed, the hooks detach then, not at the window's end.  Its weight
    and the next N count only the time it sampled."""
    clock = Clock()
    kernel = Traffic(clock, pps=1_000_000)
    ctl = run(settings(), kernel, clock, 25)
    first = ctl.counters.history[0]
    opened = next(t for t, k, n in kernel.events if k == "open")
    disarmed = kinds(kernel, "disarm")[0]
    detached = next(t for t in kinds(kernel, "detach") if t > opened)
    assert disarmed - opened <= QUOTA_POLL_S + 1e-6
    assert detached - opened < 0.05  # not 1 s: hooks on for about one poll
    assert ctl.counters.quota_spent == 2  # both windows of 25 s: the second, at N=250, a quarter through
    assert first.started == 1_000
    assert first.weight * first.started == pytest.approx(1_000_000 * 10, rel=0.02)
    second = ctl.counters.history[1]
    # The next N is the one at which a whole window would see four times the quota at this rate:
    # the quota is spent a quarter of the way through, and the window closes at the next poll.
    assert second.one_in == pytest.approx(1_000_000 / (1_000 * AIM_OVER_BUDGET), rel=0.02)
    sampled = second.closed_ns - second.opened_ns
    assert 0.22e9 < sampled < (0.25 + QUOTA_POLL_S + 0.01) * 1e9


def test_a_window_that_does_not_spend_its_quota_runs_to_its_end() -> None:
    clock = Clock()
    kernel = Traffic(clock, pps=500)  # 500 candidates a window, quota 1000
    ctl = run(settings(), kernel, clock, 25)
    assert ctl.counters.quota_spent == 0
    for w in ctl.counters.history:
        assert w.closed_ns - w.opened_ns == 1_000_000_000


def test_weights_scale_started_paths_back_to_the_matching_packets() -> None:
    clock = Clock()
    kernel = Traffic(clock, pps=20_000)
    ctl = run(settings(period_s=5, length_s=1, budget_per_s=1000), kernel, clock, 200)
    for w in list(ctl.counters.history)[2:]:
        # Each path stands for one period's matching packets over the paths of its window.
        assert w.started * w.weight == pytest.approx(20_000 * 5, rel=0.01)


def test_adaptation_stays_within_one_in_and_without_a_budget_does_nothing() -> None:
    s = settings(one_in=50)
    assert adapt_one_in(50, 0, s) == 50  # no traffic: back to the floor
    assert adapt_one_in(50, 10, s) == 50  # too little to need more than the floor
    assert adapt_one_in(50, 4_000_000, s) == 50_000  # aim: four times the quota, 1000/s x 1 s
    assert adapt_one_in(50, 1_100_000, s) == 13_750
    assert adapt_one_in(7, 10**9, settings(budget_per_s=0)) == 1
    assert adapt_one_in(7, 10**9, settings(adaptive=False, one_in=7)) == 7
    assert adapt_one_in(1, 10**12, s) <= 2**31 - 1


def test_weight_of_counts_the_period_the_open_time_and_the_refused() -> None:
    assert weight_of(100, 10, 1_000_000_000, 500, 0) == pytest.approx(1000)
    assert weight_of(100, 10, 500_000_000, 500, 0) == pytest.approx(2000)  # opened late: half as long
    assert weight_of(100, 10, 1_000_000_000, 500, 500) == pytest.approx(2000)  # the budget kept half
    assert weight_of(0, 10, 1_000_000_000, 0, 0) == 0


def test_weight_at_finds_the_window_of_a_path_by_its_first_hop_time() -> None:
    clock = Clock()
    kernel = Traffic(clock, pps=10_000)
    ctl = run(settings(period_s=4, length_s=1, one_in=10), kernel, clock, 20)
    first, second = list(ctl.counters.history)[:2]
    assert ctl.weight_at(first.opened_ns + 1000) == first.weight == pytest.approx(40)
    assert ctl.weight_at(second.closed_ns) == second.weight


def test_an_attach_that_fails_is_a_missed_window() -> None:
    clock = Clock()
    kernel = Traffic(clock, attach_fails=True)
    ctl = run(settings(period_s=10), kernel, clock, 35)
    assert ctl.counters.missed == 3 and ctl.counters.opened == 0
    assert kinds(kernel, "open") == []


def test_an_attach_that_overruns_the_lead_opens_late_and_weighs_the_shorter_window() -> None:
    clock = Clock()
    kernel = Traffic(clock, pps=10_000, attach_s=LEAD_S + 0.5)
    ctl = run(settings(period_s=10, length_s=1, one_in=10, adaptive=False), kernel, clock, 15)
    (w,) = ctl.counters.history
    assert ctl.counters.late == 1
    assert (w.closed_ns - w.opened_ns) / 1e9 == pytest.approx(0.5)
    assert w.weight == pytest.approx(10 * 10 / 0.5)


def test_the_hooks_time_on_runs_from_each_attach_to_its_detach() -> None:
    clock = Clock()
    kernel = Traffic(clock, pps=100_000, attach_s=0.002)
    ctl = run(settings(period_s=10, length_s=1), kernel, clock, 35)
    attaches, detaches = kinds(kernel, "attach"), kinds(kernel, "detach")
    assert len(attaches) == 3 and len(detaches) == 4  # the first detach: the engine's hooks at start
    spans = [d - (a - 0.002) for a, d in zip(attaches, detaches[1:], strict=True)]
    assert ctl.counters.hooks_on_since_ns is None
    assert ctl.hooks_on_seconds() == pytest.approx(sum(spans), abs=1e-6)
    # The quota is spent a quarter of the way through at the adapted N: the hooks are on for
    # about that, the lead and the linger, not the whole window.
    assert all(s < 0.5 for s in spans[1:]), spans


def test_the_hooks_time_on_counts_the_span_running_now_and_the_start() -> None:
    clock = Clock()
    kernel = Traffic(clock)
    ctl = WindowController(settings(), kernel, wall=clock.wall, monotonic_ns=clock.monotonic_ns, wait=clock.wait)
    ctl.counters.hooks_on_since_ns = clock.mono_ns  # as start() records the engine's attach
    clock.advance(0.25)
    assert ctl.hooks_on_seconds() == pytest.approx(0.25)
    ctl._detach()
    clock.advance(5)
    assert ctl.hooks_on_seconds() == pytest.approx(0.25)  # off: no longer grows
    ctl._attach()
    clock.advance(0.5)
    assert hooks_on_seconds(ctl.counters, clock.mono_ns) == pytest.approx(0.75)


def test_stopping_closes_the_window_and_detaches() -> None:
    clock = Clock()
    kernel = Traffic(clock)
    run(settings(), kernel, clock, 7.5)  # stops inside the first window
    assert kernel.events[-1][1] == "detach" and not kernel.attached
    assert kernel.one_in == 0


def test_a_slow_attach_moves_the_next_attach_earlier() -> None:
    clock = Clock()
    kernel = Traffic(clock, attach_s=0.75)  # three times the configured lead
    ctl = run(settings(period_s=10, length_s=1), kernel, clock, 40)
    assert ctl.counters.late == 1 and ctl.counters.opened == 4  # the first only
    assert ctl.lead_s() == pytest.approx(1.5)
    assert settings(period_s=4, length_s=1).lead_s < ctl.lead_s() <= (10 - 1) / 2


def test_the_first_lead_is_the_kernels_timed_attach_not_the_starts_detach() -> None:
    """A start whose detach was slow (per-hook trampolines, before the kprobe.multi links took over)
    leads the first window by twice that, up to half the gap, unless the kernel side timed an
    attach of the links: then by twice that."""
    clock = Clock()
    slow = Traffic(clock, detach_s=2.0)
    ctl = run(settings(), slow, clock, 0.5)
    assert ctl.lead_s() == pytest.approx(4.0)
    clock = Clock()
    timed = Traffic(clock, detach_s=2.0, attach_timed_s=0.2)
    ctl = run(settings(), timed, clock, 0.5)
    assert ctl.lead_s() == pytest.approx(0.4)


def test_a_reload_during_a_window_leaves_its_quota_as_armed() -> None:
    """The kernel counts the quota the window was armed with; a smaller budget reloaded meanwhile
    applies from the next window, so it must not close this one early (the fake kernel refuses a
    disarm before the close while the armed quota is not spent)."""
    clock = Clock()
    kernel = Traffic(clock, pps=2_000)  # at N=1 the quota of 1000 is spent half-way through
    ctl = WindowController(settings(), kernel, wall=clock.wall, monotonic_ns=clock.monotonic_ns, wait=clock.wait)
    first_open = next_open(clock.wall_s + ctl.lead_s(), 10)
    reloaded = False

    def wait(seconds: float) -> bool:
        nonlocal reloaded
        stopped = clock.wait(seconds)
        if not reloaded and clock.wall_s >= first_open - LEAD_S / 2:  # armed at the lead, not yet sampling
            ctl.update(settings(budget_per_s=100))
            reloaded = True
        return stopped

    ctl._wait = wait
    clock.stop_at = clock.wall_s + 25
    ctl.run()
    first, second = list(ctl.counters.history)[:2]
    assert reloaded and first.started == 1_000  # the armed quota, not the reloaded 100
    assert 0.45e9 <= first.closed_ns - first.opened_ns <= 0.52e9
    assert second.started == 100  # the reload, from the next window on

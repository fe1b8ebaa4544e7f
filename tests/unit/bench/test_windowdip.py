"""The windows' cost inside a trial (bench/windowdip.py): the region, its reference, the control."""

from __future__ import annotations

from typing import Any

import pytest

from bench.windowdip import INTERVAL_S, align_delay, opening_in, region, summarize_window_dips, window_dip

PERIOD = 10
ON_S = 0.3  # how long a window's hooks stay on in a flood, about


def flood(seconds: float, pps: float, slow: tuple[float, float, float] | None = None) -> list[list[float]]:
    """iperf3's intervals of a steady flood; `slow`: (from, to, factor) seconds of the trial run at
    that share of the rate."""
    out = []
    n = round(seconds / INTERVAL_S)
    for i in range(n):
        a, b = i * INTERVAL_S, (i + 1) * INTERVAL_S
        rate = pps
        if slow and a < slow[1] and b > slow[0]:
            overlap = min(b, slow[1]) - max(a, slow[0])
            rate = pps * (1 - (1 - slow[2]) * overlap / INTERVAL_S)
        out.append([round(a, 4), round(b, 4), round(rate * INTERVAL_S)])
    return out


def test_opening_is_the_next_multiple_of_the_period() -> None:
    assert opening_in(1_000_003.5, PERIOD) == pytest.approx(6.5)
    assert opening_in(1_000_000.0, PERIOD) == pytest.approx(10.0)


def test_a_window_slowing_the_flood_by_a_fifth_for_a_quarter_second_costs_half_a_point() -> None:
    started = 1_000_004.0  # the window opens 6 s into the trial
    slowed = flood(10, 1_000_000, slow=(6.0, 6.25, 0.8))
    got = window_dip(slowed, started, 10, PERIOD, ON_S)
    assert got["opening_s"] == pytest.approx(6.0)
    assert got["region_s"] == pytest.approx([5.85, 6.0 + ON_S + 0.1])
    # 0.25 s at a fifth less: 50,000 packets of the 10,000,000 the trial would have sent.
    assert got["points"] == pytest.approx(0.5, abs=0.01)
    assert got["reference_pps"] == 1_000_000
    steady = window_dip(flood(10, 1_000_000), started, 10, PERIOD, ON_S)
    assert steady["points"] == pytest.approx(0.0, abs=1e-9)


def test_a_slowdown_elsewhere_in_the_trial_is_not_the_window() -> None:
    started = 1_000_004.0
    drifted = flood(10, 1_000_000, slow=(0.5, 4.5, 0.9))  # before the region's reference
    assert window_dip(drifted, started, 10, PERIOD, ON_S)["points"] == pytest.approx(0.0, abs=1e-9)


def test_a_region_at_the_trial_edge_is_unusable() -> None:
    assert "points" in window_dip(flood(10, 1e6), 1_000_009.0, 10, PERIOD, ON_S)  # opens 1 s in
    late = window_dip(flood(10, 1e6), 1_000_001.0, 10, PERIOD, 1.5)  # opens 9 s in, on 1.5 s
    assert "unusable" in late
    early = window_dip(flood(10, 1e6), 1_000_009.95, 10, PERIOD, ON_S)  # opens 0.05 s in
    assert "unusable" in early


def test_align_delay_puts_a_late_opening_in_the_middle_and_never_waits_past_one() -> None:
    longest = 1.5
    assert align_delay(1_000_004.0, 10, PERIOD, longest) == 0.0  # opens 6 s in: inside already
    wait = align_delay(1_000_001.5, 10, PERIOD, longest)  # opens 8.5 s in
    assert wait == pytest.approx(8.5 - (10 - longest) / 2)
    lo, hi = region(opening_in(1_000_001.5 + wait, PERIOD), longest)
    assert lo > 0.5 and hi < 9.5
    # Opening 0.1 s in: the only fix would wait past it (a window without traffic): none.
    assert align_delay(1_000_009.9, 10, PERIOD, longest) == 0.0
    for tenth in range(100):
        now = 1_000_000 + tenth / 10
        wait = align_delay(now, 10, PERIOD, longest)
        assert 0 <= wait < opening_in(now, PERIOD)


def _trial(
    rnd: int, cond: str, started: float, intervals: list[list[float]], on_s: float | None = None
) -> dict[str, Any]:
    t: dict[str, Any] = {
        "round": rnd,
        "condition": cond,
        "workload": "drop",
        "intervals": intervals,
        "started_wall": started,
        "seconds": 10.0,
    }
    if on_s is not None:
        t["hooks_on_s"] = on_s
    return t


def test_summary_is_the_median_of_agent_minus_control_per_round_over_the_agents_region() -> None:
    trials = [
        # Round 1: the window costs 0.5 points; the control's same region is steady.
        _trial(1, "agent", 1_000_004.0, flood(10, 1e6, slow=(6.0, 6.25, 0.8)), ON_S),
        _trial(1, "agent-drops", 1_000_015.0, flood(10, 1e6)),
        # Round 2: the control dips where the agent's window was: a dip of the machine, not of
        # the window, taken off.
        _trial(2, "agent", 1_000_024.0, flood(10, 1e6, slow=(6.0, 6.25, 0.6)), ON_S),
        _trial(2, "agent-drops", 1_000_035.0, flood(10, 1e6, slow=(5.0, 5.25, 0.8))),
        # Round 3: the agent's region at the trial's edge: no figure.
        _trial(3, "agent", 1_000_040.05, flood(10, 1e6), ON_S),
        _trial(3, "agent-drops", 1_000_055.0, flood(10, 1e6)),
    ]
    got = summarize_window_dips(trials, "agent", "agent-drops", PERIOD, 1.5)
    assert got is not None
    assert got["per_round"]["n"] == 2
    assert [r["points"] for r in got["rounds"] if "points" in r] == pytest.approx([0.5, 1.0 - 0.5], abs=0.01)
    assert got["points"] == pytest.approx(0.5, abs=0.01)
    assert got["hooks_on_s"]["median"] == pytest.approx(ON_S)
    assert "unusable" in got["rounds"][2]["agent"]


def test_without_the_agents_time_on_the_region_is_the_longest_a_window_lasts() -> None:
    trials = [
        _trial(1, "agent", 1_000_003.0, flood(10, 1e6, slow=(7.0, 8.2, 0.9))),
        _trial(1, "agent-drops", 1_000_013.0, flood(10, 1e6)),
    ]
    got = summarize_window_dips(trials, "agent", "agent-drops", PERIOD, 1.5)
    assert got is not None and got["hooks_on_s"]["median"] == 1.5
    assert got["points"] == pytest.approx(1.2, abs=0.01)  # 1.2 s at a tenth less
    assert summarize_window_dips(trials[:1], "agent", "agent-drops", PERIOD, 1.5) is None


def test_a_long_lead_moves_the_region_earlier() -> None:
    """Where attaching is slow (an emulated guest) the agent attaches well before the opening: the
    hooks' time on starts then, and so does the region."""
    trials = [
        _trial(1, "agent", 1_000_004.0, flood(10, 1e6, slow=(5.6, 6.2, 0.8)), 0.6),
        _trial(1, "agent-drops", 1_000_014.0, flood(10, 1e6)),
    ]
    trials[0]["lead_s"] = 0.4
    got = summarize_window_dips(trials, "agent", "agent-drops", PERIOD, 1.5)
    assert got is not None
    assert got["rounds"][0]["agent"]["region_s"] == pytest.approx([6.0 - 0.4 - 0.15, 6.0 + 0.6 + 0.1])
    assert got["points"] == pytest.approx(1.2, abs=0.01)  # 0.6 s at a fifth less
    trials[0]["lead_s"] = 0.0
    short = summarize_window_dips(trials, "agent", "agent-drops", PERIOD, 1.5)
    assert short is not None and short["points"] < 1.0  # what a region from the opening would miss


def test_hooks_on_for_most_of_each_trial_leave_no_region_and_say_so() -> None:
    """Slow edges (function hooks detaching for seconds) keep the hooks on for most of a trial: no
    region fits with its reference, and the summary says how long they were on instead of a figure."""
    trials = [
        _trial(1, "agent", 1_000_004.0, flood(10, 1e6, slow=(0.0, 9.0, 0.6)), 8.5),
        _trial(1, "agent-drops", 1_000_014.0, flood(10, 1e6)),
    ]
    trials[0]["lead_s"] = 4.5
    got = summarize_window_dips(trials, "agent", "agent-drops", PERIOD, 1.5)
    assert got is not None and got["points"] is None
    assert got["hooks_on_s"]["max"] == pytest.approx(8.5)
    assert "unusable" in got["rounds"][0]["agent"]

"""The paths part's overhead table (bench.paths.summarize_overhead): judged as the throughput part is."""

from __future__ import annotations

from typing import Any

import pytest

from bench.paths import summarize_overhead


def _t(rnd: int, name: str, pps: float, disturbed: str | None = None) -> dict[str, Any]:
    return {
        "round": rnd,
        "condition": name,
        "workload": "deliver",
        "pps": pps,
        "disturbed": disturbed,
        "lost_packets": 0,
        "sent_packets": int(pps * 10),
    }


def test_each_trial_is_judged_against_the_mean_of_its_rounds_two_baselines() -> None:
    trials = [
        # Round 1 slows down as it goes: 1100 at its start, 900 at its end (mean 1000).
        _t(1, "baseline", 1100.0),
        _t(1, "agent-default", 990.0),
        _t(1, "baseline", 900.0),
        _t(2, "baseline", 500.0),
        _t(2, "agent-default", 495.0),
        _t(2, "baseline", 500.0),
        _t(3, "baseline", 800.0),
        _t(3, "agent-default", 100.0, disturbed="sender got 50% of its CPU"),
        _t(3, "baseline", 800.0),
    ]
    s = summarize_overhead(trials)
    agent = s["agent-default"]
    assert agent["vs_baseline"] == pytest.approx(0.99)  # 99 % in both clean rounds, despite the drift
    assert agent["paired_ratio"]["n"] == 2  # the disturbed trial is left out while clean ones exist
    assert agent["trials_disturbed"] == 1
    assert s["baseline"]["pps"]["n"] == 6
    assert s["agent-drops"]["vs_baseline"] is None  # no trial of it: no figure

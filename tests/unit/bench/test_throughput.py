"""The throughput bench's drop-flood arithmetic (bench.throughput.drop_costs) and how it is printed."""

from __future__ import annotations

from typing import Any

import pytest

from bench import report
from bench.throughput import PATHS_ADD_MAX_POINTS, drop_costs, summarize_trials

CONDITIONS = ["baseline", "agent", "agent-drops", "floor"]


Round = float | tuple[float, ...]  # one round's trials of a condition: the baseline has two


def _trials(pps: dict[str, list[Round]], disturbed: dict[tuple[str, int], str] | None = None) -> list[dict[str, Any]]:
    out = []
    for name, values in pps.items():
        for rnd, v in enumerate(values, 1):
            for one in v if isinstance(v, tuple) else (v,):
                out.append(
                    {
                        "round": rnd,
                        "condition": name,
                        "workload": "drop",
                        "pps": one,
                        "disturbed": (disturbed or {}).get((name, rnd)),
                    }
                )
    return out


def _costs(pps: dict[str, list[Round]], disturbed: dict[tuple[str, int], str] | None = None) -> dict[str, Any]:
    trials = _trials(pps, disturbed)
    return drop_costs(trials, summarize_trials(trials, CONDITIONS))


def test_paths_cost_is_the_median_of_per_round_differences_over_the_rounds_own_baseline() -> None:
    d = _costs(
        {
            # Each round opens and closes with a baseline: its baseline is their mean (1000, 1000, 800).
            "baseline": [(1100.0, 900.0), (1000.0, 1000.0), (820.0, 780.0)],
            "agent": [920.0, 900.0, 736.0],  # 92 %, 90 %, 92 %
            "agent-drops": [930.0, 940.0, 744.0],  # 93 %, 94 %, 93 %
            "floor": [950.0, 950.0, 760.0],  # 95 % each round
        }
    )
    pr = d["paths_add_points_per_round"]
    assert (pr["min"], pr["median"], pr["max"]) == pytest.approx((1.0, 1.0, 4.0))
    assert d["paths_add_points"] == pytest.approx(1.0)  # the median round, not the 4-point one
    assert d["paths_add_ok"] is (PATHS_ADD_MAX_POINTS >= 1.0)
    # The conditions' figures are median paired ratios: floor 95 %, agent-drops 93 %, agent 92 %.
    assert d["floor_ratio"] == pytest.approx(0.95)
    assert d["counting_over_floor_points"] == pytest.approx(2.0)
    assert d["default_over_floor_points"] == pytest.approx(3.0)


def test_a_round_that_drifts_is_judged_against_the_mean_of_its_two_baselines() -> None:
    trials = _trials(
        {
            # Round 1 slows down as it goes: 1100 at its start, 900 at its end.
            "baseline": [(1100.0, 900.0), (1000.0, 1000.0), (1000.0, 1000.0)],
            "agent": [940.0, 940.0, 940.0],
        }
    )
    agent = summarize_trials(trials, ["baseline", "agent"])["drop"]["agent"]
    assert agent["vs_baseline"] == pytest.approx(0.94)
    assert agent["paired_ratio"]["min"] == pytest.approx(0.94)  # not 940/1100
    base = summarize_trials(trials, ["baseline"])["drop"]["baseline"]
    assert base["pps"]["n"] == 6
    assert (base["paired_ratio"]["min"], base["paired_ratio"]["max"]) == pytest.approx((0.9, 1.1))


def test_a_cheaper_default_config_passes_and_a_disturbed_trial_leaves_its_round_out() -> None:
    d = _costs(
        {
            "baseline": [(1000.0, 1000.0)] * 3,
            "agent": [935.0, 600.0, 936.0],
            "agent-drops": [940.0, 941.0, 939.0],
            "floor": [950.0, 951.0, 949.0],
        },
        disturbed={("agent", 2): "sender CPU 50 %"},
    )
    assert d["paths_add_points_per_round"]["n"] == 2  # round 2's agent trial is not compared
    assert d["paths_add_points"] == pytest.approx(((0.940 - 0.935) + (0.939 - 0.936)) / 2 * 100)
    assert d["paths_add_ok"] is True


def test_without_a_floor_there_is_nothing_above_it() -> None:
    d = _costs({"baseline": [(1000.0, 1000.0)], "agent": [900.0], "agent-drops": [950.0]})
    assert d["floor_ratio"] is None and d["counting_over_floor_points"] is None
    assert d["paths_add_ok"] is False


def test_the_report_prints_the_costs_and_the_verdict() -> None:
    pps: dict[str, list[Round]] = {
        "baseline": [(1000.0, 1000.0)] * 3,
        "agent": [930.0, 932.0, 931.0],  # per round 0.5, 0.4, 0.6 points under agent-drops
        "agent-drops": [935.0, 936.0, 937.0],
        "floor": [950.0, 951.0, 949.0],
    }
    trials = _trials(pps)
    summary = summarize_trials(trials, CONDITIONS)
    lines: list[str] = []
    report._throughput(
        {
            "rounds_done": 3,
            "seconds_per_trial": 10,
            "sender_cpu": 0,
            "conditions": CONDITIONS,
            "agent_default_hops": ["kfree_skb"],
            "summary": summary,
            "drop_costs": drop_costs(trials, summary),
            "trials": trials,
        },
        lines,
    )
    text = "\n".join(lines)
    assert "floor = an empty program on skb:kfree_skb" in text
    assert "paths cost (agent-drops minus agent, per round): median +0.5 points, +0.4..+0.6" in text
    assert f"target <= +{PATHS_ADD_MAX_POINTS:.1f} ok" in text
    # agent-drops 93.6 %, agent 93.1 % (median paired ratios), floor 95.0 %.
    assert "above the floor (95.0%): counting alone +1.4 points, the default config +1.9 points" in text
    assert "each round opens and closes with a baseline trial" in text

"""The throughput bench's drop-flood arithmetic (bench.throughput.drop_costs) and how it is printed."""

from __future__ import annotations

from typing import Any

import pytest

from bench import report
from bench.throughput import (
    ALL_HOPS,
    DROP_HOP,
    PATHS_ADD_MAX_POINTS,
    attached_hops_check,
    choose_conditions,
    condition_yaml,
    drop_costs,
    summarize_trials,
)
from exporter.config import parse_config
from exporter.model.hops import TABLE
from tests.unit.bench.test_windowdip import flood

CONDITIONS = ["baseline", "agent", "agent-drops", "floor"]


Round = float | tuple[float, ...]  # one round's trials of a condition: the baseline has two


def _trials(
    pps: dict[str, list[Round]],
    disturbed: dict[tuple[str, int], str] | None = None,
    windows: dict[str, list[float]] | None = None,
) -> list[dict[str, Any]]:
    """Drop trials; `windows`: by condition, each round's window cost inside its trial (points)."""
    out = []
    for name, values in pps.items():
        for rnd, v in enumerate(values, 1):
            for one in v if isinstance(v, tuple) else (v,):
                t: dict[str, Any] = {
                    "round": rnd,
                    "condition": name,
                    "workload": "drop",
                    "pps": one,
                    "disturbed": (disturbed or {}).get((name, rnd)),
                }
                if windows and name in windows:
                    t.update(_window_trial(rnd, windows[name][rnd - 1], with_on_s=name == "agent"))
                out.append(t)
    return out


def _window_trial(rnd: int, points: float, with_on_s: bool) -> dict[str, Any]:
    """A drop trial's intervals whose window region (the opening 6 s in) lacks `points` points: a
    dip over the 0.3 s the hooks are on."""
    on_s = 0.3
    factor = 1 - points / 100 * 10 / on_s
    t: dict[str, Any] = {
        "started_wall": 1_000_004.0 + 100 * rnd,
        "seconds": 10.0,
        "intervals": flood(10, 1_000_000, slow=(6.0, 6.0 + on_s, factor)),
    }
    if with_on_s:
        t["hooks_on_s"] = on_s
    return t


def _costs(
    pps: dict[str, list[Round]],
    disturbed: dict[tuple[str, int], str] | None = None,
    windows: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    trials = _trials(pps, disturbed, windows)
    return drop_costs(trials, summarize_trials(trials, CONDITIONS))


def test_paths_cost_between_trials_is_the_median_of_per_round_differences_over_the_rounds_own_baseline() -> None:
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
    assert d["paths_add_between_trials_points"] == pytest.approx(1.0)  # the median round, not the 4-point one
    # Without the windows measured inside the trials there is no verdict: the difference between
    # trials is shown, not judged.
    assert d["paths_add_points"] is None and d["paths_add_ok"] is None
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
        windows={"agent": [0.6, 2.5, 0.8], "agent-drops": [0.1, 0.0, 0.1]},
    )
    assert d["paths_add_points_per_round"]["n"] == 2  # round 2's agent trial is not compared
    assert d["paths_add_between_trials_points"] == pytest.approx(((0.940 - 0.935) + (0.939 - 0.936)) / 2 * 100)
    within = d["paths_add_within_trials"]
    assert within["per_round"]["n"] == 2  # nor its window
    assert d["paths_add_points"] == pytest.approx((0.5 + 0.7) / 2, abs=0.01)
    assert d["paths_add_ok"] is True


def test_windows_that_cost_more_than_the_target_inside_the_trials_miss_it() -> None:
    d = _costs(
        {"baseline": [(1000.0, 1000.0)] * 3, "agent": [940.0] * 3, "agent-drops": [940.0] * 3},
        windows={"agent": [1.4, 1.3, 1.5], "agent-drops": [0.1, 0.2, 0.0]},
    )
    assert d["paths_add_between_trials_points"] == pytest.approx(0.0)  # the trials' totals agree
    assert d["paths_add_points"] == pytest.approx(1.3, abs=0.01)
    assert d["paths_add_ok"] is (PATHS_ADD_MAX_POINTS >= 1.3)


def test_the_report_says_when_no_window_could_be_measured_inside_its_trial() -> None:
    trials = _trials({"baseline": [(1000.0, 1000.0)], "agent": [500.0], "agent-drops": [800.0]})
    for t in trials:
        t.update(seconds=10.0, started_wall=1_000_004.0, intervals=flood(10, 1e6))
        if t["condition"] == "agent":
            t.update(hooks_on_s=9.2, lead_s=4.5)
    summary = summarize_trials(trials, CONDITIONS)
    d = drop_costs(trials, summary)
    assert d["paths_add_points"] is None and d["paths_add_ok"] is None
    lines: list[str] = []
    report._drop_costs(d, lines)
    text = "\n".join(lines)
    assert "no round could be measured: the path hooks were on 9.200..9.200 s of each 10 s trial" in text
    assert "paths cost between trials (agent-drops minus agent, per round): median +30.0 points" in text


def test_without_a_floor_there_is_nothing_above_it() -> None:
    d = _costs(
        {"baseline": [(1000.0, 1000.0)], "agent": [900.0], "agent-drops": [950.0]},
        windows={"agent": [2.0], "agent-drops": [0.0]},
    )
    assert d["floor_ratio"] is None and d["counting_over_floor_points"] is None
    assert d["paths_add_ok"] is False


def test_the_report_prints_the_costs_and_the_verdict() -> None:
    pps: dict[str, list[Round]] = {
        "baseline": [(1000.0, 1000.0)] * 3,
        "agent": [930.0, 932.0, 931.0],  # per round 0.5, 0.4, 0.6 points under agent-drops
        "agent-drops": [935.0, 936.0, 937.0],
        "floor": [950.0, 951.0, 949.0],
    }
    trials = _trials(pps, windows={"agent": [0.62, 0.55, 0.70], "agent-drops": [0.05, 0.0, 0.10]})
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
    assert (
        "paths cost, the windows inside each trial (agent minus agent-drops, per round):"
        f" median +0.57 points, +0.55..+0.60, 3 rounds   target <= +{PATHS_ADD_MAX_POINTS:.1f} ok"
    ) in text
    assert (
        "the window's region lacked +0.62 points in the agent's trials, +0.05 in agent-drops' (no windows);"
        " the path hooks were on 0.300 s of each trial (0.300..0.300)"
    ) in text
    assert "paths cost between trials (agent-drops minus agent, per round): median +0.5 points, +0.4..+0.6" in text
    # agent-drops 93.6 %, agent 93.1 % (median paired ratios), floor 95.0 %.
    assert "above the floor (95.0%): counting alone +1.4 points, the default config +1.9 points" in text
    assert "each round opens and closes with a baseline trial" in text


# -- which agent each condition is, and what it attached --------------------------------------


def test_counting_alone_excludes_every_hop_of_the_table_but_the_drop_hop() -> None:
    """Not just the hops a first agent attached: nft_do_chain attaches only once nf_tables is
    loaded, and a 6.12 guest's "counting alone" once carried its verdict counter (fentry/fexit on
    every packet) because the list was taken before the workload's iptables rule loaded it."""
    exclude = [h for h in ALL_HOPS if h != DROP_HOP]
    assert {"nft_do_chain", "ipt_do_table", "fib_validate_source", "ip_route_input_noref"} <= set(exclude)
    assert set(ALL_HOPS) == {p for spec in TABLE for p in spec.programs}
    drops = parse_config(condition_yaml("agent-drops", exclude))
    assert set(drops.probes.exclude) == set(exclude)
    assert (drops.sampling.one_in, drops.sampling.drop_one_in) == (0, 0)
    counters = parse_config(condition_yaml("agent-counters", exclude))
    assert counters.probes.exclude == () and (counters.sampling.one_in, counters.sampling.drop_one_in) == (0, 0)
    assert condition_yaml("agent", exclude) == ""


def test_the_counters_condition_runs_only_where_a_verdict_counter_attaches() -> None:
    host = ["kfree_skb", "netif_receive_skb", "net_dev_queue", "fib_table_lookup"]  # tracepoints only
    guest = [*host, "ip_rcv", "nft_do_chain", "fib_validate_source", "ip_route_input_noref"]
    assert choose_conditions(host, bpftrace=True, floor=True) == [
        "baseline", "agent", "agent-drops", "floor", "bpftrace",
    ]  # fmt: skip
    assert choose_conditions(guest, bpftrace=False, floor=True) == [
        "baseline", "agent", "agent-counters", "agent-drops", "floor",
    ]  # fmt: skip
    # An agent that attaches kfree_skb alone: nothing to compare it with.
    assert choose_conditions(["kfree_skb"], bpftrace=False, floor=False) == ["baseline", "agent"]


def test_a_counting_condition_that_attached_more_than_its_label_says_is_reported() -> None:
    runs: list[dict[str, Any]] = [
        {"condition": "agent-drops", "agent_hops": {"kfree_skb": "tp", "nft_do_chain": "fentry"}},
        {"condition": "agent-drops", "agent_hops": {"kfree_skb": "tp"}},
        {"condition": "agent-counters", "agent_hops": {"kfree_skb": "tp", "fib_validate_source": "fexit"}},
        {"condition": "agent", "agent_hops": {"kfree_skb": "tp", "netif_receive_skb": "tp"}},
        {"condition": "baseline"},
    ]
    seen = attached_hops_check(runs)
    assert seen["agent-drops"] == {"hops": ["kfree_skb", "nft_do_chain"], "unexpected": ["nft_do_chain"]}
    assert seen["agent-counters"]["unexpected"] == []
    assert seen["agent"]["unexpected"] == []
    lines: list[str] = []
    trials = _trials({"baseline": [(1000.0, 1000.0)], "agent": [930.0], "agent-drops": [940.0]})
    summary = summarize_trials(trials, ["baseline", "agent", "agent-drops"])
    report._throughput(
        {
            "rounds_done": 1,
            "seconds_per_trial": 10,
            "sender_cpu": 0,
            "conditions": ["baseline", "agent", "agent-drops"],
            "summary": summary,
            "drop_costs": drop_costs(trials, summary),
            "sanity": {"attached": seen},
        },
        lines,
    )
    assert "NOTE: agent-drops also attached nft_do_chain: its figures are not what its label says" in "\n".join(lines)


def test_where_verdict_counters_attach_the_paths_are_measured_against_the_agent_with_paths_off() -> None:
    """The default config keeps the verdict counters on: they are not the paths' cost."""
    conditions = ["baseline", "agent", "agent-counters", "agent-drops", "floor"]
    pps: dict[str, list[Round]] = {
        "baseline": [(1000.0, 1000.0)] * 3,
        "agent": [700.0, 702.0, 701.0],
        "agent-counters": [800.0, 801.0, 802.0],  # verdict counters: 14 points over counting alone
        "agent-drops": [940.0, 941.0, 942.0],
        "floor": [990.0, 990.0, 990.0],
    }
    trials = _trials(pps, windows={"agent": [5.0, 6.0, 7.0], "agent-counters": [0.0, 0.1, 0.0]})
    summary = summarize_trials(trials, conditions)
    d = drop_costs(trials, summary)
    assert d["paths_reference"] == "agent-counters"
    assert d["paths_add_between_trials_points"] == pytest.approx(10.0)
    assert d["paths_add_points"] == pytest.approx(6.0, abs=0.2)
    assert d["counters_over_floor_points"] == pytest.approx(18.9)
    assert d["counting_over_floor_points"] == pytest.approx(4.9)
    lines: list[str] = []
    report._throughput(
        {
            "rounds_done": 3,
            "seconds_per_trial": 10,
            "sender_cpu": 0,
            "conditions": conditions,
            "summary": summary,
            "drop_costs": d,
            "sanity": {"attached": {"agent-counters": {"hops": ["kfree_skb", "nft_do_chain"], "unexpected": []}}},
        },
        lines,
    )
    text = "\n".join(lines)
    assert "agent-counters = paths off (one_in, drop_one_in 0): the always-on counters alone" in text
    assert "attached kfree_skb, nft_do_chain" in text
    assert "paths cost between trials (agent-counters minus agent, per round): median +10.0 points" in text
    assert "(agent minus agent-counters, per round)" in text
    assert "counting alone +4.9 points, the always-on counters +18.9 points, the default config +28.9 points" in text

"""The per-hop attach-family benchmark's arithmetic (bench/hopcost.py): fdinfo parsing, costs, verdicts."""

from __future__ import annotations

from typing import Any

import pytest

from bench.hopcost import (
    added_ns,
    agent_choice,
    baseline_by_round,
    compare_families,
    consistent,
    mark_contended,
    net_of_empty,
    parse_fdinfo,
    per_run_ns,
    summarize_end_to_end,
    summarize_in_program,
)

# /proc/<pid>/fdinfo/<fd> of a tp_btf program on 6.12 (kernel/bpf/syscall.c: bpf_prog_show_fdinfo).
FDINFO = """pos:\t0
flags:\t02000002
mnt_id:\t16
ino:\t2083
prog_type:\t26
prog_jited:\t1
prog_tag:\t3b185187f1855c4c
memlock:\t4096
prog_id:\t57
run_time_ns:\t1843002
run_cnt:\t51234
recursion_misses:\t0
verified_insns:\t2
"""


def test_parse_fdinfo_keeps_integers() -> None:
    info = parse_fdinfo(FDINFO)
    assert info["prog_id"] == 57
    assert info["run_time_ns"] == 1843002
    assert info["run_cnt"] == 51234
    assert "prog_tag" not in info  # hex, not a count


def test_per_run_ns_is_a_difference_of_two_readings() -> None:
    before = {"run_time_ns": 1000, "run_cnt": 10}
    after = {"run_time_ns": 5000, "run_cnt": 110}
    assert per_run_ns(before, after) == (40.0, 100)
    assert per_run_ns(after, after) == (None, 0)  # never ran: no figure, not a division by zero


def test_added_ns_per_packet() -> None:
    # 1 Mpps -> 1000 ns per packet; 800 kpps -> 1250 ns: the program costs 250 ns per packet.
    assert added_ns(800_000, 1_000_000) == pytest.approx(250.0)
    assert added_ns(1_000_000, 1_000_000) == 0.0


def _t(rnd: int, variant: str, pps: float, disturbed: str | None = None) -> dict[str, Any]:
    return {"round": rnd, "variant": variant, "pps": pps, "disturbed": disturbed}


def test_end_to_end_pairs_each_trial_with_its_rounds_baseline() -> None:
    trials = [
        _t(1, "none", 1_000_000),
        _t(1, "drop/fentry/empty", 800_000),
        _t(2, "none", 500_000),
        _t(2, "drop/fentry/empty", 400_000),
        # round 3's baseline was disturbed and the round has no other: it is still used (all disturbed)
        _t(3, "drop/fentry/empty", 900_000, disturbed="sender got 50% of its CPU"),
    ]
    s = summarize_end_to_end(trials, ["drop/fentry/empty"])
    v = s["drop/fentry/empty"]
    assert v["ratio"]["median"] == pytest.approx(0.8)  # 0.8 in both rounds despite the drift
    assert v["added_ns_by_round"] == {1: pytest.approx(250.0), 2: pytest.approx(500.0)}
    assert v["trials"] == 3 and v["disturbed"] == 1
    assert v["pps"]["n"] == 2  # the disturbed trial is left out while clean ones exist


def test_baseline_is_the_mean_of_the_rounds_baselines() -> None:
    trials = [
        _t(1, "none", 1_000_000),
        _t(1, "none", 600_000),
        _t(1, "none", 10, disturbed="busy"),
        _t(2, "none", 500_000),
    ]
    assert baseline_by_round(trials) == {1: 800_000, 2: 500_000}


def test_in_program_and_net_of_empty() -> None:
    runs: list[dict[str, Any]] = [
        {"variant": "drop/tp_btf/empty", "ns_per_run": 20.0, "run_cnt": 100, "packets": 100},
        {"variant": "drop/tp_btf/body", "ns_per_run": 65.0, "run_cnt": 200, "packets": 100},
        {"variant": "drop/tp_btf/body", "ns_per_run": 55.0, "run_cnt": 200, "packets": 100},
        {"variant": "drop/fentry/body", "ns_per_run": None, "run_cnt": 0, "packets": 100},
    ]
    s = summarize_in_program(runs, ["drop/tp_btf/empty", "drop/tp_btf/body", "drop/fentry/body"])
    assert s["drop/tp_btf/body"]["ns_per_run"]["median"] == 60.0
    assert s["drop/tp_btf/body"]["runs_per_packet"]["median"] == 2.0
    assert s["drop/fentry/body"]["ns_per_run"] is None
    # body minus the empty program of the same hop and flavor; no empty fentry measured: no figure
    assert net_of_empty(s) == {"drop/tp_btf/body": 40.0}


def test_consistent_needs_every_round_and_enough_of_them() -> None:
    assert consistent({1: 10, 2: 11, 3: 9}, {1: 20, 2: 12, 3: 30})
    assert not consistent({1: 10, 2: 13, 3: 9}, {1: 20, 2: 12, 3: 30})  # round 2 went the other way
    assert not consistent({1: 10, 2: 11}, {1: 20, 2: 12})  # two rounds are not enough


def test_agent_choice_is_the_first_working_candidate() -> None:
    assert agent_choice(["fentry", "kprobe"], {"kprobe", "tracepoint"}) == "kprobe"
    assert agent_choice(["fentry", "kprobe"], {"fentry", "kprobe"}) == "fentry"
    assert agent_choice(["tracepoint"], {"fentry"}) is None


def _e2e(by_round: dict[int, float]) -> dict[str, Any]:
    vals = sorted(by_round.values())
    return {"added_ns": {"median": vals[len(vals) // 2]}, "added_ns_by_round": by_round}


def test_compare_families_flags_a_cheaper_family_the_agent_does_not_pick() -> None:
    e2e = {
        "iprcv/fentry/body": _e2e({1: 300.0, 2: 320.0, 3: 310.0}),
        "iprcv/kprobe/body": _e2e({1: 200.0, 2: 210.0, 3: 190.0}),
        "iprcv/kprobe/empty": _e2e({1: 1.0, 2: 1.0, 3: 1.0}),  # other bodies are not compared
    }
    c = compare_families("iprcv", e2e, "body", ["fentry", "kprobe"])
    assert c["cheapest"] == "kprobe" and c["agent_choice"] == "fentry"
    assert c["cheaper_than_choice_every_round"] is True
    assert "ratio_to_tracepoint" not in c  # no tracepoint for this hop


def test_compare_families_tells_an_unoffered_twin_apart() -> None:
    e2e = {
        "drop/tp_btf/body": _e2e({1: 300.0, 2: 320.0, 3: 310.0}),
        "drop/fentry/body": _e2e({1: 200.0, 2: 330.0, 3: 190.0}),
    }
    c = compare_families("drop", e2e, "body", ["tracepoint"])
    assert c["agent_choice"] == "tracepoint" and c["cheapest"] == "fentry"
    assert c["cheapest_offered"] == "tracepoint"
    assert c["unoffered_cheaper_every_round"] is False  # round 2 says otherwise: not a finding
    assert c["ratio_to_tracepoint"]["fentry"] == pytest.approx(200.0 / 310.0)


def test_mark_contended_keeps_an_earlier_reason() -> None:
    rows = [
        _t(1, "none", 1.0),
        _t(1, "rx/fentry/empty", 1.0, disturbed="sender got 50% of its CPU"),
        _t(2, "none", 1.0),
    ]
    assert mark_contended(rows, {(1, "none"), (1, "rx/fentry/empty")}, "shared") == 1
    assert [r["disturbed"] for r in rows] == ["shared", "sender got 50% of its CPU", None]


def test_guest_trial_lines_are_recognized() -> None:
    from bench.hops import _TRIAL_LINE  # the lines bench/hops.py logs, as relayed from the guest

    m = _TRIAL_LINE.match("  round 3 rx/kprobe/body+paths        87,050 pkt/s")
    assert m is not None and m.groups() == ("round", "3", "rx/kprobe/body+paths")
    m = _TRIAL_LINE.match("  stats 2 drop/tp_btf/empty          97.7 ns/run, 112,745 runs for 112,740 packets")
    assert m is not None and m.groups() == ("stats", "2", "drop/tp_btf/empty")
    assert _TRIAL_LINE.match("hops: loading 23 variants on 6.12.117+deb12-amd64 ...") is None

"""The attach/detach benchmark's arithmetic (bench/attachcost.py) and its table (bench/attach.py render)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench.attachcost import (
    edge_disturbance,
    expected_pps,
    percentile,
    scaling_rows,
    summarize_ops,
    summary_ms,
    window_cost,
)


def test_percentile_is_nearest_rank_of_measured_values() -> None:
    values = [float(v) for v in range(1, 51)]  # 1..50
    assert percentile(values, 95) == 48.0  # ceil(0.95 * 50) = 48th smallest
    assert percentile(values, 50) == 25.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([3.0, 1.0, 2.0], 100) == 3.0
    with pytest.raises(ValueError):
        percentile([], 95)


def test_summary_ms_converts_seconds() -> None:
    s = summary_ms([0.001, 0.002, 0.003, 0.010])
    assert s is not None
    assert s["n"] == 4
    assert s["median"] == pytest.approx(2.5)
    assert s["p95"] == pytest.approx(10.0)
    assert s["min"] == pytest.approx(1.0)
    assert s["max"] == pytest.approx(10.0)
    assert summary_ms([]) is None


def test_summarize_ops_per_hop_and_op_leaves_failed_calls_out() -> None:
    rows = [
        {"hop": "ip_rcv", "op": "attach", "wall_s": 0.020, "cpu_s": 0.020},
        {"hop": "ip_rcv", "op": "detach", "wall_s": 0.150, "cpu_s": 0.021},
        {"hop": "ip_rcv", "op": "attach", "wall_s": 0.022, "cpu_s": 0.021},
        {"hop": "ip_rcv", "op": "detach", "wall_s": 0.170, "cpu_s": 0.020, "real_s": 0.2},
        {"hop": "ip_rcv", "op": "attach", "wall_s": 9.0, "cpu_s": 9.0, "error": "attach failed: Device busy"},
        {"hop": "nf_hook_slow", "op": "attach", "wall_s": 0.060, "cpu_s": 0.059},
    ]
    out = summarize_ops(rows, "hop")
    assert list(out) == ["ip_rcv", "nf_hook_slow"]
    att = out["ip_rcv"]["attach"]
    assert att["wall_ms"]["n"] == 2 and att["wall_ms"]["max"] == pytest.approx(22.0)
    assert (att["errors"], att["first_error"]) == (1, "attach failed: Device busy")
    det = out["ip_rcv"]["detach"]
    assert det["wall_ms"]["median"] == pytest.approx(160.0)
    assert det["cpu_ms"]["median"] == pytest.approx(20.5)
    assert det["real_ms"]["n"] == 1 and det["real_ms"]["median"] == pytest.approx(200.0)
    assert "real_ms" not in att
    assert list(out["nf_hook_slow"]) == ["attach"]


def test_window_cost_prices_both_edges_per_period() -> None:
    c = window_cost(
        attach_cpu_ms=300.0,
        detach_cpu_ms=300.0,
        attach_wall_ms=350.0,
        detach_wall_ms=2200.0,
        period_s=60.0,
        window_s=5.0,
    )
    assert c["cpu_share_of_core"] == pytest.approx(0.6 / 60.0)
    assert c["blocked_share_of_window"] == pytest.approx(0.35 / 5.0)
    assert c["detach_wall_share_of_gap"] == pytest.approx(2.2 / 55.0)
    assert math.isinf(window_cost(1, 1, 1, 1, 1.0, 1.0)["detach_wall_share_of_gap"])
    with pytest.raises(ValueError):
        window_cost(1, 1, 1, 1, period_s=1.0, window_s=2.0)


def test_expected_pps_mixes_by_time_attached() -> None:
    assert expected_pps(1_000_000, 800_000, 0.0) == 1_000_000
    assert expected_pps(1_000_000, 800_000, 1.0) == 800_000
    assert expected_pps(1_000_000, 800_000, 0.25) == pytest.approx(950_000)


def test_edge_disturbance_is_flood_cpu_per_edge() -> None:
    # 1 % of the flood's CPU lost at 100 edges/s: 100 us of that CPU per edge.
    d = edge_disturbance(1_000_000, 990_000, 100.0)
    assert d["lost_share"] == pytest.approx(0.01)
    assert d["flood_cpu_us_per_edge"] == pytest.approx(100.0)
    # Against what the attached hooks alone explain, not against nothing attached.
    d = edge_disturbance(1_000_000, 900_000, 50.0, pps_expected=900_000)
    assert d["lost_share"] == pytest.approx(0.0)
    assert d["ratio"] == pytest.approx(1.0)
    assert edge_disturbance(1_000_000, 1_000_000, 0.0)["flood_cpu_us_per_edge"] is None


def test_scaling_rows_in_order_of_k_with_wall_per_hook() -> None:
    rows = [
        {"k": k, "how": how, "wall_s": 0.15 * k if how == "serial" else 0.16, "cpu_s": 0.02 * k}
        for k in (4, 1, 2)
        for how in ("serial", "parallel")
        for _ in range(3)
    ]
    out = scaling_rows(rows)
    assert [(r["k"], r["how"]) for r in out] == [
        (1, "serial"),
        (1, "parallel"),
        (2, "serial"),
        (2, "parallel"),
        (4, "serial"),
        (4, "parallel"),
    ]
    four = out[4]
    assert four["wall_ms"]["median"] == pytest.approx(600.0)
    assert four["wall_ms_per_hook"] == pytest.approx(150.0)
    assert out[5]["wall_ms_per_hook"] == pytest.approx(40.0)


def _edge(op: str, wall: float, cpu: float, **extra: object) -> dict[str, object]:
    return {"op": op, "hops": 2, "links": 3, "wall_s": wall, "cpu_s": cpu, "hop_wall_s": {}, **extra}


def test_table_from_raw_rows() -> None:
    """summarize() then render(): one kernel with a tracepoint and an fentry family, a window, a flood."""
    from bench.attach import render, summarize

    per_hop = [
        {"hop": h, "family": f, "links": n, "op": op, "wall_s": w, "cpu_s": c, "rep": r}
        for r in range(4)
        for h, f, n in (("net_dev_queue", "tracepoint", 1), ("ip_rcv", "fentry", 1))
        for op, w, c in (("attach", 0.0002, 0.0002), ("detach", 0.15 if f == "fentry" else 0.0001, 0.0001))
    ]
    tp_group = [
        _edge("attach", 0.001, 0.001),
        _edge("detach", 0.001, 0.001),
        _edge("detach-parallel", 0.004, 0.002, parallel=True),
        _edge("attach-after-detach", 0.015, 0.001),
    ]
    window = [_edge("attach", 0.35, 0.35, real_s=0.26), _edge("detach", 2.1, 0.35, real_s=2.27)]
    scaling = [
        {"op": "detach", "k": k, "how": how, "wall_s": 0.15 * k, "cpu_s": 0.02 * k, "rep": 0}
        for k in (1, 2)
        for how in ("attach", "serial", "parallel")
    ]
    multi = {
        "functions": ["ip_rcv", "ip_output"],
        "rows": [
            {"k": k, "how": how, "wall_s": 0.16 if how == "detach" else 0.02, "cpu_s": 0.02, "rep": 0}
            for k in (1, 2)
            for how in ("attach", "detach")
        ],
    }
    trial = {"seconds": 2.0, "ipis_cpu0": {"CAL": 10}}
    flood: dict[str, Any]
    flood = {
        "payload_bytes": 64,
        "rounds": 1,
        "seconds_per_trial": 2.0,
        "fired": ["net_dev_queue"],
        "unfired": ["consume_skb"],
        "trials": [
            dict(trial, condition="none", pps=1_000_000.0),
            dict(trial, condition="attached", pps=960_000.0),
            dict(
                trial,
                condition="toggle-unfired",
                pps=990_000.0,
                ipis_cpu0={"CAL": 2010},
                toggler={"edges_per_s": 100.0, "cpu_share": 0.1, "fired_attached_share": 0.0},
            ),
            dict(
                trial,
                condition="toggle-all",
                pps=970_000.0,
                ipis_cpu0={"CAL": 2010},
                toggler={"edges_per_s": 100.0, "cpu_share": 0.1, "fired_attached_share": 0.5},
            ),
        ],
    }
    from bench.attach import summarize_flood

    flood["summary"] = summarize_flood(flood["trials"])
    tp_hops = [r for r in per_hop if r["family"] == "tracepoint"]
    result = {
        "kernel": "6.12.0",
        "libbpf": "v1.1",
        "reps": 4,
        "gap_ms": 50.0,
        "guest_clock": "instructions (-icount)",
        "status": "ok",
        "flood": flood,
        "modes": {
            "auto": {
                "always_on": ["kfree_skb"],
                "shared_with_others_at_start": [],
                "families": {
                    "tracepoint": {"hops": ["net_dev_queue"], "group": tp_group, "per_hop": tp_hops},
                    "fentry": {
                        "hops": ["ip_rcv"],
                        "scaling": scaling,
                        "per_hop": [r for r in per_hop if r["family"] == "fentry"],
                        "phases": {"per_hop": {"edges": 8, "seconds": 1.0, "rcu_kthreads_ms_per_edge": 0.13}},
                    },
                },
                "window": {"hops": ["net_dev_queue", "ip_rcv"], "group": window},
                "kprobe_multi": multi,
            }
        },
    }
    summarize(result)
    lines: list[str] = []
    render({"guest-6.12": result}, lines)
    text = "\n".join(lines)
    assert "guest ms (-icount: instructions)" in text
    assert "  ip_rcv (fentry)" in text and "150.000" in text  # detach wall median, ms
    assert "all path hops, 2 serial" in text
    # Cells of a second and more keep a space between them (one decimal): detach wall 2100 ms.
    window_cells = next(ln for ln in lines if "all path hops, 2 serial" in ln).split()[-8:]
    assert window_cells[4:6] == ["2100.0", "2100.0"], window_cells
    assert "real time on the host, ms: attach 260.0 (p95 260.0); detach 2270.0 (p95 2270.0)" in text
    assert "2 together" in text and "wall 150.0 per hook" in text
    assert "kprobe.multi reference (an empty program, one link over k of the 2 functions)" in text
    assert "2 in one link" in text and "detach 160.0 ms (CPU 20.0)" in text
    assert "attach < 1 GP after detach" in text
    assert "RCU kthreads' run time per edge, ms: per_hop 0.130" in text
    # The window's edges at a 60 s period: (350 + 350) ms of CPU per 60 s.
    assert "period  60 s, window   5 s: CPU 1.1667% of a core" in text
    # 1 % of the flood lost at 100 edges/s: 100 us of its CPU per edge; (1005 - 5) IPIs/s at 100 edges/s: 10 each.
    flood_cells = next(ln for ln in lines if ln.lstrip().startswith("toggle-unfired")).split()
    assert flood_cells[-1] == "100.0" and flood_cells[-2] == "10.0"
    # toggle-all: hooks worth 960 k attached half the time explain 980 k; 970 k is 1/98 below that.
    toggle_all = next(ln for ln in lines if ln.lstrip().startswith("toggle-all ")).split()
    assert toggle_all[-1] == f"{(1 - 970 / 980) / 100 * 1e6:.1f}"

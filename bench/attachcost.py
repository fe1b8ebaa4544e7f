"""The arithmetic of the attach/detach benchmark (bench/attach.py): no kernel, no root.

What a sampling window's edges cost: attaching the packet-path hops when a window opens and
detaching them when it closes, from programs loaded once at start-up.  Each edge has two costs:

wall    how long the call blocks its caller (time.perf_counter around it).  Detaching the last
        link of an fentry trampoline or of a kprobe waits for RCU grace periods in the caller;
        the thread sleeps, so this costs time, not CPU.
CPU     CPU time of the calling thread (time.thread_time; for a parallel detach, of every thread
        that made a call).  Work the kernel does elsewhere (RCU kthreads, IPIs to other CPUs) is
        not in it; the flood trials and the RCU kthreads' own run time show that part.

Percentiles are nearest-rank: p95 of 50 values is the 48th smallest, a value that was measured.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Per hop and per group: attach, then detach of the same hops, repeated.
OPS = ("attach", "detach")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 < q <= 100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: Iterable[float]) -> dict[str, float] | None:
    """n, median, p95, min and max of durations given in seconds, in milliseconds."""
    ms = [s * 1e3 for s in seconds]
    if not ms:
        return None
    return {"n": len(ms), "median": statistics.median(ms), "p95": percentile(ms, 95), "min": min(ms), "max": max(ms)}


def summarize_ops(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Rows {key: ..., "op": ..., "wall_s", "cpu_s"[, "real_s"]} -> per key, per op: wall and CPU
    summaries (and the real-time one where rows carry it), in first-seen order of the key."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        out.setdefault(str(row[key]), {})
    for name, ops in out.items():
        mine = [r for r in rows if str(r[key]) == name]
        for op in dict.fromkeys(r["op"] for r in mine):
            these = [r for r in mine if r["op"] == op and not r.get("error")]
            s: dict[str, Any] = {
                "wall_ms": summary_ms(r["wall_s"] for r in these),
                "cpu_ms": summary_ms(r["cpu_s"] for r in these),
            }
            real = [r["real_s"] for r in these if r.get("real_s") is not None]
            if real:
                s["real_ms"] = summary_ms(real)
            errors = [r["error"] for r in mine if r["op"] == op and r.get("error")]
            if errors:
                s["errors"] = len(errors)
                s["first_error"] = errors[0]
            ops[op] = s
    return out


def window_cost(
    attach_cpu_ms: float,
    detach_cpu_ms: float,
    attach_wall_ms: float,
    detach_wall_ms: float,
    period_s: float,
    window_s: float,
) -> dict[str, float]:
    """What one window (one attach edge and one detach edge per period) costs.

    cpu_share_of_core: the edges' CPU time per period, as a fraction of one core.
    blocked_share_of_window: how much of the window the opening edge spends attaching (hooks
    attach one after another, so the last one starts this late); the closing edge's wall time
    is spent after the window, while its hooks are already unhooked or being unhooked.
    """
    if period_s <= 0 or window_s <= 0 or window_s > period_s:
        raise ValueError(f"need 0 < window <= period, got window {window_s} s, period {period_s} s")
    cpu_s = (attach_cpu_ms + detach_cpu_ms) / 1e3
    return {
        "period_s": period_s,
        "window_s": window_s,
        "cpu_share_of_core": cpu_s / period_s,
        "blocked_share_of_window": (attach_wall_ms / 1e3) / window_s,
        "detach_wall_share_of_gap": (detach_wall_ms / 1e3) / (period_s - window_s) if period_s > window_s else math.inf,
    }


def expected_pps(pps_none: float, pps_attached: float, attached_share: float) -> float:
    """Packets/s of a flood whose hooks are attached `attached_share` of the time, if attaching
    and detaching cost the flood nothing by themselves: the time-weighted mix of the two rates."""
    return attached_share * pps_attached + (1.0 - attached_share) * pps_none


def edge_disturbance(
    pps_none: float, pps: float, edges_per_s: float, pps_expected: float | None = None
) -> dict[str, Any]:
    """What other work on the machine loses to attach/detach edges.

    A flood pinned to one CPU sends `pps` while edges happen at `edges_per_s`, against `pps_none`
    (or `pps_expected`, when hooks the flood fires are attached part of the time) without edges.
    The share of the flood's CPU lost is 1 - pps / expected; divided by the edge rate it is the
    flood CPU's time each edge takes from it (IPIs for text patching, lock or cache effects)."""
    ref = pps_expected if pps_expected is not None else pps_none
    lost = 1.0 - pps / ref if ref > 0 else math.nan
    per_edge_us = lost / edges_per_s * 1e6 if edges_per_s > 0 else None
    return {"ratio": pps / ref if ref > 0 else None, "lost_share": lost, "flood_cpu_us_per_edge": per_edge_us}


def per_edge(delta: float, edges: int) -> float | None:
    return delta / edges if edges > 0 else None


def scaling_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Detach of k hooks together, serial and parallel: per (k, how), the wall and CPU summaries and
    the wall per hook, in order of k."""
    out: list[dict[str, Any]] = []
    for k in sorted({int(r["k"]) for r in rows}):
        for how in dict.fromkeys(r["how"] for r in rows if int(r["k"]) == k):
            these = [r for r in rows if int(r["k"]) == k and r["how"] == how]
            wall = summary_ms(r["wall_s"] for r in these)
            out.append(
                {
                    "k": k,
                    "how": how,
                    "wall_ms": wall,
                    "cpu_ms": summary_ms(r["cpu_s"] for r in these),
                    "wall_ms_per_hook": wall["median"] / k if wall else None,
                }
            )
    return out

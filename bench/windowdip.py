"""What the sampling windows cost a drop flood, measured inside one trial (issue 12).

The default agent attaches its path hooks only around a window (one second in ten, from a few
milliseconds before it opens until its quota is spent and its packets have ended).  While they are
on, every packet of a flood pays their dispatch; the rest of the time it pays the always-on drop
program only.  Two trials of different conditions differ by more than that (the machine's drift
from one trial to the next is 2-4 % here, more than the 1 point the target allows), but inside one
trial the window shows as a dip in the flood's rate at a known time: windows open at the multiples
of the period on the wall clock.

So a drop trial reports its rate every INTERVAL_S (iperf3 -i), and the window's cost is the
packets that the intervals around the opening lack against the rate of the intervals on either
side of them (up to REFERENCE_S each side), over what the whole trial would have sent at that rate.
The region runs from REGION_BEFORE_S before the hooks came on (the agent's lead before the opening:
10 ms here, longer where attaching is slow) to REGION_AFTER_S after they came off:
the agent says how long they were on (pktpath_sampling_path_hooks_seconds_total, read around the
trial), a quarter second or so under a flood, so the region is about half a second and the
machine's slow wander inside a trial (a few % over seconds) weighs little.  The same sum over the
same wall-clock region of a trial without windows (counting alone) is the control: what such a
region reads when nothing happens there.  The difference is the windows' cost, free of the drift
between trials.

The trial must hold the whole region with room on both sides, so before each such trial the bench
waits, when needed, until the next opening falls in the middle of the trial (align_delay)."""

from __future__ import annotations

from typing import Any

from bench.stats import summarize

INTERVAL_S = 0.1  # iperf3 reports the packets sent in each tenth of a second
# The region around a window: from before the opening (the hooks come on a lead earlier: 10 ms
# here) to after the hooks' time on has passed, with room for the uncertainty of the trial's start
# on the wall clock (the iperf3 client starts sending some milliseconds after it is spawned) and
# for the interval that straddles each edge.
REGION_BEFORE_S = 0.15
REGION_AFTER_S = 0.1
REFERENCE_S = 1.0  # the rate the region is held against: this much on each side of it
# The first and last interval of a trial are the ramp-up and a remainder: never used.
EDGE_S = INTERVAL_S
MIN_REFERENCE_S = 1.0


def region(open_s: float, on_s: float, lead_s: float = 0.0) -> tuple[float, float]:
    """The part of the trial that a window opening `open_s` seconds after its start, whose hooks were
    on for `on_s` from `lead_s` before it (at most), may slow."""
    return open_s - lead_s - REGION_BEFORE_S, open_s + on_s + REGION_AFTER_S


def opening_in(started_wall: float, period_s: int) -> float:
    """Seconds from `started_wall` to the next multiple of the period on the wall clock."""
    return period_s - started_wall % period_s


def align_delay(now_wall: float, seconds: float, period_s: int, window_s: float) -> float:
    """How long to wait before starting a trial of `seconds` so that its window's region lies inside
    it with room on both sides, however long the window stays open: 0 if it does already, else the
    wait that puts the opening in the middle.  Never a wait past an opening (the window would pass
    without traffic, and the next one would adapt to that)."""
    until = opening_in(now_wall, period_s)
    lo, hi = region(until, window_s)
    if lo >= EDGE_S + MIN_REFERENCE_S / 2 and hi <= seconds - EDGE_S - MIN_REFERENCE_S / 2:
        return 0.0
    mid = (seconds - window_s) / 2
    return max(0.0, until - mid)


def window_dip(
    intervals: list[list[float]], started_wall: float, seconds: float, period_s: int, on_s: float, lead_s: float = 0.0
) -> dict[str, Any]:
    """The packets a trial lacks around its window's opening, in points of what the whole trial would
    have sent at the rate around it.  `intervals`: [start, end, packets] from iperf3, seconds from
    the trial's start (taken as `started_wall` on the wall clock); `on_s`: how long the window's
    hooks were on (for a trial without windows, its round's agent's), from at most `lead_s` before
    the opening.  A trial whose region does not fit with its reference says why instead."""
    open_s = opening_in(started_wall, period_s)
    lo, hi = region(open_s, on_s, lead_s)
    usable = [iv for iv in intervals if iv[0] >= EDGE_S - 1e-6 and iv[1] <= seconds - EDGE_S + 1e-6]
    inside = [iv for iv in usable if lo <= _mid(iv) <= hi]
    around = [iv for iv in usable if lo - REFERENCE_S <= _mid(iv) < lo or hi < _mid(iv) <= hi + REFERENCE_S]
    out: dict[str, Any] = {"opening_s": round(open_s, 3), "region_s": [round(lo, 3), round(hi, 3)]}
    ref_s = sum(iv[1] - iv[0] for iv in around)
    if lo < EDGE_S or hi > seconds - EDGE_S or not inside or ref_s < MIN_REFERENCE_S:
        out["unusable"] = "the window's region is too close to the trial's edge"
        return out
    rate = sum(iv[2] for iv in around) / ref_s
    region_s = sum(iv[1] - iv[0] for iv in inside)
    lacking = rate * region_s - sum(iv[2] for iv in inside)
    total_s = sum(iv[1] - iv[0] for iv in intervals)
    out.update(
        reference_pps=round(rate),
        region_pps=round(sum(iv[2] for iv in inside) / region_s),
        points=lacking / (rate * total_s) * 100,
    )
    return out


def summarize_window_dips(
    trials: list[dict[str, Any]], agent: str, control: str, period_s: int, longest_on_s: float, workload: str = "drop"
) -> dict[str, Any] | None:
    """Per round: the window cost inside the agent's trial minus the control's (the same wall-clock
    region, as long as the agent's hooks were on, in a trial without windows); their median, each
    side's, and each round's detail.  None without such pairs of trials; "points" None when no
    round's region fit in its trials.  `longest_on_s`: the region's length when the agent did not
    say how long its hooks were on."""
    rounds: dict[int, dict[str, dict[str, Any]]] = {}
    for t in trials:
        if (
            t["workload"] == workload
            and t["condition"] in (agent, control)
            and t.get("intervals")
            and not t.get("disturbed")
        ):
            rounds.setdefault(t["round"], {})[t["condition"]] = t
    detail = []
    for rnd, pair in sorted(rounds.items()):
        if {agent, control} > pair.keys():
            continue
        on_s = pair[agent].get("hooks_on_s")
        on_s = longest_on_s if on_s is None else on_s
        lead_s = min(pair[agent].get("lead_s") or 0.0, on_s)
        costs = {
            name: window_dip(t["intervals"], t["started_wall"], t["seconds"], period_s, on_s, lead_s)
            for name, t in pair.items()
        }
        row: dict[str, Any] = {
            "round": rnd,
            "hooks_on_s": on_s,
            "lead_s": lead_s,
            agent: costs[agent],
            control: costs[control],
        }
        if all("points" in c for c in costs.values()):
            row["points"] = costs[agent]["points"] - costs[control]["points"]
        detail.append(row)
    used = [r for r in detail if "points" in r]
    diff = summarize([r["points"] for r in used])
    if diff is None:
        # Say why, where there were windows: hooks on for most of each trial (slow edges) leave no
        # region with room for its reference.
        on = summarize([r["hooks_on_s"] for r in detail])
        return None if on is None else {"points": None, "rounds": detail, "hooks_on_s": on}
    return {
        "points": diff["median"],
        "per_round": diff,
        "agent_points": summarize([r[agent]["points"] for r in used]),
        "control_points": summarize([r[control]["points"] for r in used]),
        "hooks_on_s": summarize([r["hooks_on_s"] for r in used]),
        "rounds": detail,
    }


def _mid(iv: list[float]) -> float:
    return (iv[0] + iv[1]) / 2

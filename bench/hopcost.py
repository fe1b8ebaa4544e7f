"""The arithmetic of the per-hop attach-family benchmark (bench/hops.py): no kernel, no root.

Two measures per variant (one hop, one attach flavor, an empty program or pktpath's real body):

end to end   packets/s of one sender core with the program attached, against the same round's
             trial with nothing attached.  The cost of one invocation, dispatch included, is
             1/pps - 1/pps_baseline (seconds per packet; the hop fires once per packet).
in program   run_time_ns / run_cnt of the program, from /proc/self/fdinfo/<prog fd> while
             kernel.bpf_stats_enabled is 1.  The kernel starts and stops that clock around the
             program itself (bpf_prog_run(), or __bpf_prog_enter/exit in an fentry trampoline), so it
             leaves out what differs between families -- the trampoline, the ftrace/kprobe handler
             and its pt_regs, bpf_trace_run() -- which only the end-to-end figure sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bench.stats import round_means, summarize

NONE = "none"  # the condition with nothing attached
# What `pktpath`'s loader calls each flavor (exporter/loader/probes.py); tp_btf is the tracepoint flavor
# the agent uses, raw_tp and classic (perf) tracepoints are measured for comparison only.
FLAVOR_FAMILY = {
    "tp_btf": "tracepoint",
    "raw_tp": "tracepoint",
    "tracepoint": "tracepoint",
    "fentry": "fentry",
    "kprobe": "kprobe",
}
AGENT_FLAVOR = {"tracepoint": "tp_btf", "fentry": "fentry", "kprobe": "kprobe"}


def parse_fdinfo(text: str) -> dict[str, int]:
    """The integer fields of a BPF program's /proc/<pid>/fdinfo/<fd> ("run_cnt:\t12")."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        try:
            out[key.strip()] = int(value.strip())
        except ValueError:
            continue  # prog_tag is hex, pos/flags are not interesting
    return out


def per_run_ns(before: Mapping[str, int], after: Mapping[str, int]) -> tuple[float | None, int]:
    """(ns per invocation, invocations) between two fdinfo readings; None when it never ran."""
    runs = after.get("run_cnt", 0) - before.get("run_cnt", 0)
    ns = after.get("run_time_ns", 0) - before.get("run_time_ns", 0)
    return (ns / runs if runs > 0 else None), runs


def added_ns(pps: float, base_pps: float) -> float:
    """Nanoseconds one packet costs more than the baseline's (negative: faster than baseline)."""
    return (1.0 / pps - 1.0 / base_pps) * 1e9


def _clean(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Undisturbed trials, or all of them when every one was disturbed (the summary says so)."""
    rows = list(rows)
    return [t for t in rows if not t.get("disturbed")] or rows


def baseline_by_round(trials: Sequence[dict[str, Any]]) -> dict[int, float]:
    """Each round's nothing-attached packets/s: the mean of its baseline trials (a round has two,
    half a round apart, so drift within the round is averaged), undisturbed ones preferred."""
    return round_means(_clean(t for t in trials if t["variant"] == NONE))


def summarize_end_to_end(trials: Sequence[dict[str, Any]], variants: Sequence[str]) -> dict[str, Any]:
    """Per variant: packets/s, the paired ratio to the same round's baseline, and the added ns/packet."""
    base = baseline_by_round(trials)
    out: dict[str, Any] = {}
    for name in [NONE, *variants]:
        every = [t for t in trials if t["variant"] == name]
        rows = _clean(every)
        paired = [
            (t["round"], t["pps"] / base[t["round"]], added_ns(t["pps"], base[t["round"]]))
            for t in rows
            if t["round"] in base and t["pps"] > 0
        ]
        out[name] = {
            "pps": summarize([t["pps"] for t in rows]),
            "ratio": summarize([r for _rnd, r, _ns in paired]),
            "added_ns": summarize([ns for _rnd, _r, ns in paired]),
            "added_ns_by_round": {rnd: ns for rnd, _r, ns in paired},
            "trials": len(every),
            "disturbed": sum(1 for t in every if t.get("disturbed")),
        }
    return out


def summarize_in_program(runs: Sequence[dict[str, Any]], variants: Sequence[str]) -> dict[str, Any]:
    """Per variant: ns per invocation (bpf_stats) and invocations per packet sent."""
    out: dict[str, Any] = {}
    for name in variants:
        rows = _clean(r for r in runs if r["variant"] == name and r.get("ns_per_run") is not None)
        out[name] = {
            "ns_per_run": summarize([r["ns_per_run"] for r in rows]),
            "runs_per_packet": summarize([r["run_cnt"] / r["packets"] for r in rows if r.get("packets")]),
        }
    return out


def mark_contended(rows: Iterable[dict[str, Any]], contended: set[tuple[int, str]], why: str) -> int:
    """Mark the trials (round, variant) that ran while the host was shared: disturbed, unless they
    already were.  Returns how many were marked."""
    n = 0
    for r in rows:
        if (r.get("round", 1), r["variant"]) in contended and not r.get("disturbed"):
            r["disturbed"] = why
            n += 1
    return n


def variant_name(hop: str, flavor: str, body: str) -> str:
    return f"{hop}/{flavor}/{body}"


def split_name(name: str) -> tuple[str, str, str]:
    hop, flavor, body = name.split("/")
    return hop, flavor, body


def net_of_empty(in_program: Mapping[str, Any]) -> dict[str, float]:
    """In-program ns of each non-empty variant minus the empty program of the same hop and flavor:
    what the body itself costs, with the stats clock's own overhead taken out."""
    out: dict[str, float] = {}
    for name, s in in_program.items():
        hop, flavor, body = split_name(name)
        empty = in_program.get(variant_name(hop, flavor, "empty"), {}).get("ns_per_run")
        if body != "empty" and s.get("ns_per_run") and empty:
            out[name] = s["ns_per_run"]["median"] - empty["median"]
    return out


def consistent(a_by_round: Mapping[int, float], b_by_round: Mapping[int, float], min_rounds: int = 3) -> bool:
    """True when a < b in every round both were measured, over at least `min_rounds` rounds: a
    difference that survives the round-to-round noise, not one produced by a single lucky trial."""
    rounds = sorted(set(a_by_round) & set(b_by_round))
    return len(rounds) >= min_rounds and all(a_by_round[r] < b_by_round[r] for r in rounds)


def agent_choice(candidates: Sequence[str], working: Iterable[str]) -> str | None:
    """The family the agent's loader attaches: its first candidate (best first) that works here."""
    ok = set(working)
    return next((f for f in candidates if f in ok), None)


def compare_families(
    hop: str, end_to_end: Mapping[str, Any], body: str, agent_candidates: Sequence[str]
) -> dict[str, Any]:
    """For one hop and one program body: each family's end-to-end cost (the flavor the agent
    would attach), the cheapest one measured, the one the agent would choose, and whether the
    order between them held in every round."""
    costs: dict[str, float] = {}
    by_round: dict[str, dict[int, float]] = {}
    for family, flavor in AGENT_FLAVOR.items():
        s = end_to_end.get(variant_name(hop, flavor, body))
        if s and s["added_ns"]:
            costs[family] = s["added_ns"]["median"]
            by_round[family] = s["added_ns_by_round"]
    cheapest = min(costs, key=lambda f: costs[f]) if costs else None
    chosen = agent_choice(agent_candidates, costs)
    out: dict[str, Any] = {
        "hop": hop,
        "body": body,
        "added_ns": costs,
        "cheapest": cheapest,
        "agent_candidates": list(agent_candidates),
        "agent_choice": chosen,
    }
    tp = costs.get("tracepoint")
    if tp:
        out["ratio_to_tracepoint"] = {f: c / tp for f, c in costs.items()}
    if cheapest and chosen and cheapest != chosen:
        out["cheaper_than_choice_every_round"] = consistent(by_round[cheapest], by_round[chosen])
    # The cheapest family among those the agent offers for this hop, and whether one it does not
    # offer (a twin it could add) is clearly cheaper still.
    offered = {f: c for f, c in costs.items() if f in agent_candidates}
    if offered:
        best_offered = min(offered, key=lambda f: offered[f])
        out["cheapest_offered"] = best_offered
        if cheapest and cheapest != best_offered:
            out["unoffered_cheaper_every_round"] = consistent(by_round[cheapest], by_round[best_offered])
    return out

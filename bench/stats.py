"""Summaries that keep the spread next to the middle, so noise can be told from a real difference."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict


class Summary(TypedDict):
    n: int
    median: float
    min: float
    max: float


def summarize(values: Sequence[float]) -> Summary | None:
    if not values:
        return None
    return Summary(n=len(values), median=statistics.median(values), min=min(values), max=max(values))


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def round_means(trials: Iterable[Mapping[str, Any]]) -> dict[int, float]:
    """Each round's mean packets/s over `trials`: a round's baseline trials, taken at two times of the
    round (its two ends, or half a round apart), so that the round's drift averages out of the
    baseline each of its other trials is divided by."""
    by_round: dict[int, list[float]] = {}
    for t in trials:
        by_round.setdefault(t["round"], []).append(t["pps"])
    return {rnd: statistics.fmean(v) for rnd, v in by_round.items()}


def paired_ratios(trials: Iterable[Mapping[str, Any]], base: Mapping[int, float]) -> Summary | None:
    """Each trial's packets/s over its own round's baseline (round_means), summarized: the median is
    a condition's figure, the spread how much one comparison moves.  Rounds without a baseline are
    left out."""
    return summarize([t["pps"] / base[t["round"]] for t in trials if base.get(t["round"])])

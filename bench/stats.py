"""Summaries that keep the spread next to the middle, so noise can be told from a real difference."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TypedDict


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

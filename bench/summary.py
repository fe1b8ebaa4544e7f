"""The small summary JSON of a run, committed under bench/results/ (latest.json keeps every raw sample).

A summary names the commit it measured, says whether the tree had uncommitted changes ("dirty": such a
run cannot be reproduced from its commit, and docs/benchmarks.md may not quote it), carries the
machine facts, the summaries of every part without the raw trials, and the table exactly as printed.
docs/benchmarks.md pastes result blocks from that printed table and names the file above each block;
tests/unit/test_bench_docs.py checks every block against it.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
# Lists of per-trial / per-start records: in latest.json only.
RAW_KEYS = frozenset({"runs", "discarded", "trials", "discarded_trials", "condition_runs", "stats_runs"})


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def source_state() -> dict[str, Any]:
    """{"commit": short sha or None (not a git checkout), "dirty": uncommitted changes, "changed": which}.

    Untracked files count (an untracked module is imported like any other), except the results
    directory itself, where this very run writes."""
    commit = _git("rev-parse", "--short=7", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "changed": []}
    status = _git("status", "--porcelain", "--untracked-files=all") or ""
    changed = [line[3:] for line in status.splitlines() if not line[3:].startswith("bench/results/")]
    return {"commit": commit.strip(), "dirty": bool(changed), "changed": changed[:20]}


def summary_name(source: dict[str, Any], part: str, quick: bool) -> str:
    commit = source["commit"] or "nogit"
    return f"{commit}{'-dirty' if source['dirty'] else ''}-{part}{'-quick' if quick else ''}.json"


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in RAW_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def summary(results: dict[str, Any], printed: str, argv: list[str]) -> dict[str, Any]:
    out = {
        "source": results["source"],
        "argv": argv,
        "status": results["status"],
        "elapsed_seconds": results.get("elapsed_seconds"),
        "environment": results["environment"],
        "printed": printed.splitlines(),
    }
    parts = {k: v for k, v in results.items() if k not in {"source", "status", "elapsed_seconds", "environment"}}
    out["parts"] = _strip(copy.deepcopy(parts))
    return out

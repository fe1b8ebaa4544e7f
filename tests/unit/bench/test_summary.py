"""The bench's committed summary: named by commit, marked dirty, small, and holding what was printed."""

from __future__ import annotations

import json

from bench.report import render
from bench.summary import source_state, summary, summary_name


def test_names_say_commit_dirtiness_part_and_quick() -> None:
    clean = {"commit": "abc1234", "dirty": False}
    assert summary_name(clean, "startup", quick=False) == "abc1234-startup.json"
    assert summary_name({**clean, "dirty": True}, "default", quick=True) == "abc1234-dirty-default-quick.json"
    assert summary_name({"commit": None, "dirty": None}, "scrape", quick=False) == "nogit-scrape.json"


def test_source_state_of_this_checkout() -> None:
    state = source_state()
    assert state["commit"] is None or len(state["commit"]) == 7
    assert state["dirty"] == bool(state["changed"]) or state["commit"] is None


def test_summary_keeps_summaries_and_the_printed_table_not_raw_trials() -> None:
    results = {
        "status": "ok",
        "quick": True,
        "elapsed_seconds": 5.4,
        "source": {"commit": "abc1234", "dirty": False, "changed": []},
        "environment": {
            "date_utc": "2026-11-28 02:19:15 UTC",
            "kernel": "6.18",
            "cpus": 2,
            "cpu_model": "x",
            "pktpath": "pktpath 0.1.0",
            "loadavg_start": ["1.48", "1.57", "0.94"],
            "loadavg_end": ["1.60", "1.60", "0.96"],
        },
        "scrape": {
            "scrapers": 20,
            "seconds": 5.02,
            "scrapes": 6515,
            "errors": 0,
            "first_errors": [],
            "scrapes_per_second": 1296.6,
            "latency_ms": {"p50": 15.1, "p90": 18.2, "p99": 23.6, "max": 35.4},
            "agent_cpu_seconds": 4.49,
            "agent_cpu_percent": 89.4,
            "agent_cpu_ms_per_scrape": 0.689,
            "listen_overflows": 0,
            "metrics_bytes": 8282,
            "p99_target_ms": 250.0,
            "p99_ok": True,
            "exit_code": 0,
        },
        "throughput": {"summary": {"drop": {"agent": {"pps": {"median": 1.0}}}}, "trials": [{"pps": 1}] * 50},
    }
    printed = render({k: v for k, v in results.items() if k != "throughput"})  # its table needs every field
    out = summary(results, printed, ["--quick", "--only", "scrape"])
    assert out["printed"] == printed.splitlines()
    assert "measured: commit abc1234" in printed and "p99 23.6 ms" in printed and "target p99 < 250 ms ok" in printed
    assert "trials" not in out["parts"]["throughput"] and out["parts"]["throughput"]["summary"]
    assert out["parts"]["scrape"]["latency_ms"]["p99"] == 23.6
    assert out["source"]["commit"] == "abc1234" and out["environment"]["kernel"] == "6.18"
    json.dumps(out)

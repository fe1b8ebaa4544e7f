"""Start-up time (spawn to first attached probe) and resident memory of an idle and a scraped agent."""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.agent import AgentRun
from bench.procs import BenchError, bpftool_available, perf_attached
from bench.stats import summarize

START_TARGET_S = 0.2
RSS_TARGET_MB = 60.0


def measure_startup(runs: int, binary: str, deadline: float) -> dict[str, Any]:
    """Start and stop the agent `runs` times (fewer if `deadline`, a monotonic time, is reached)."""
    records: list[dict[str, Any]] = []
    for i in range(runs):
        if time.monotonic() > deadline:
            break
        with AgentRun(binary) as agent:
            attach_s, own_ms = agent.wait_attached()
            # Cross-check the log line against the kernel: by the time it is logged, bpftool must
            # see this pid holding a program on kfree_skb.  Checked after the timing, never during
            # it: polling bpftool would compete with the agent for the same two CPUs.
            in_kernel = perf_attached(agent.pid, "kfree_skb") if bpftool_available() else None
            serving_s = agent.wait_serving()
            _t, serving_line = agent.wait_line("serving metrics on", 1)
            ready = agent.ready()
            agent.stop()
            records.append({
                "run": i + 1,
                "spawn_to_log_line_ms": attach_s * 1000,
                "agent_reported_ms": own_ms,
                "spawn_to_serving_ms": serving_s * 1000,
                "readyz_200": ready,
                "kfree_skb_attached_per_bpftool": in_kernel,
                "sigterm_to_exit_ms": (agent.stop_seconds or 0.0) * 1000,
                "exit_code": agent.exit_code,
                # "(N of M hops attached)": more hops mean more to load, so say how many there were.
                "serving_line": serving_line.split(": ", 1)[-1],
                "hops": agent.attached_hops(),
            })
        # Let the kernel finish freeing the previous object (RCU-deferred) before the
        # next load, so one start does not pay for the last one's teardown.
        time.sleep(0.2)

    def col(key: str) -> list[float]:
        return [float(r[key]) for r in records if r.get(key) is not None]

    return {
        "runs": records,
        "summary": {key: summarize(col(key)) for key in
                    ("spawn_to_log_line_ms", "agent_reported_ms", "spawn_to_serving_ms", "sigterm_to_exit_ms")},
        "all_ready": all(r["readyz_200"] for r in records),
        "all_exit_0": all(r["exit_code"] == 0 for r in records),
        "all_seen_by_bpftool": all(r["kfree_skb_attached_per_bpftool"] is not False for r in records),
        "target_ms": START_TARGET_S * 1000,
    }


def measure_memory(binary: str, idle_s: float = 2.0, scrapes: int = 100) -> dict[str, Any]:
    """VmRSS once idle after start-up, then again after `scrapes` sequential /metrics requests."""
    with AgentRun(binary) as agent:
        agent.start_ready()
        time.sleep(idle_s)
        idle = agent.status_kb()
        latencies: list[float] = []
        size = 0
        for _ in range(scrapes):
            t0 = time.monotonic()
            status, body = agent.get("/metrics")
            latencies.append((time.monotonic() - t0) * 1000)
            if status != 200:
                raise BenchError(f"/metrics answered {status}")
            size = len(body)
        scraped = agent.status_kb()
        code = agent.stop()
    return {
        "idle_seconds": idle_s,
        "idle_kb": idle,
        "scrapes": scrapes,
        "after_scrapes_kb": scraped,
        "scrape_ms": {"median": statistics.median(latencies), "max": max(latencies)},
        "metrics_bytes": size,
        "exit_code": code,
        "target_mb": RSS_TARGET_MB,
    }

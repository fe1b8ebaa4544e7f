"""The human-readable table printed at the end of a run (the JSON file has every raw number)."""

from __future__ import annotations

from typing import Any

from bench.throughput import AGENT_CONDITIONS, LOSS_TARGET, MAX_RETRIES, PAYLOAD


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("ok" if ok else "MISSED")


def _ms(s: dict[str, Any] | None) -> tuple[str, str]:
    if not s:
        return "-", "-"
    return f"{s['median']:.1f} ms", f"{s['max']:.1f} ms"


def _startup(r: dict[str, Any], lines: list[str]) -> None:
    s = r["summary"]
    target = r["target_ms"]
    n = len(r["runs"])
    lines.append(f"Start-up ({n} starts)                       median       max   target")
    rows = [
        ("spawn -> log 'first probe attached'", s["spawn_to_log_line_ms"], f"< {target:.0f} ms"),
        ("agent's own figure (from main())", s["agent_reported_ms"], ""),
        ("spawn -> serving /metrics (/readyz 200)", s["spawn_to_serving_ms"], ""),
        ("SIGTERM -> exit", s["sigterm_to_exit_ms"], ""),
    ]
    for label, summ, tgt in rows:
        med, mx = _ms(summ)
        verdict = _verdict(summ["max"] < target) if tgt and summ else ""
        lines.append(f"  {label:<40}{med:>10}{mx:>10}   {tgt} {verdict}".rstrip())
    if r.get("discarded"):
        worst = max(d["cpu_pressure_ms"] for d in r["discarded"])
        lines.append(f"  {len(r['discarded'])} start(s) run again: other tasks kept a CPU busy during them"
                     f" (PSI cpu pressure >= {r['max_pressure_ms']:.0f} ms, up to {worst:.0f} ms)")
    pressured = [x for x in r["runs"] if (x.get("cpu_pressure_ms") or 0) >= r.get("max_pressure_ms", 1e9)]
    if pressured:
        lines.append(f"  {len(pressured)} start(s) kept although under CPU pressure (redo limit reached)")
    if r["runs"]:
        lines.append(f"  agent logged: {r['runs'][0]['serving_line']}")
        lines.append(f"  hops attached: {', '.join(r['runs'][0].get('hops', {})) or '?'}")
    lines.append(f"  all /readyz 200: {'yes' if r['all_ready'] else 'NO'};"
                 f" kfree_skb program seen by bpftool at the log line: {'yes' if r['all_seen_by_bpftool'] else 'NO'};"
                 f" all exited 0 on SIGTERM: {'yes' if r['all_exit_0'] else 'NO'}")


def _memory(m: dict[str, Any], lines: list[str]) -> None:
    target = m["target_mb"]
    idle, after = m["idle_kb"], m["after_scrapes_kb"]
    lines.append("Memory (VmRSS of the agent process)")
    rows = [
        (f"idle, {m['idle_seconds']:g} s after ready", idle["VmRSS"], True),
        (f"after {m['scrapes']} scrapes of /metrics", after["VmRSS"], True),
        ("peak (VmHWM)", after["VmHWM"], False),
    ]
    for label, kb, check in rows:
        tgt = f"   < {target:.0f} MB {_verdict(kb / 1024 < target)}" if check else ""
        lines.append(f"  {label:<40}{kb / 1024:>7.1f} MB{tgt}")
    lines.append(f"  scrape latency median {m['scrape_ms']['median']:.1f} ms, max {m['scrape_ms']['max']:.1f} ms;"
                 f" /metrics body {m['metrics_bytes']} bytes")


def _pct(r: float | None) -> str:
    return "-" if r is None else f"{r * 100:.1f}%"


def _error_line(error: str | None) -> str:
    """bpftrace follows its ERROR line with the program and a ~~~ marker; the ERROR line is the news."""
    lines = [ln.strip() for ln in (error or "").splitlines() if ln.strip()]
    return next((ln for ln in lines if "ERROR" in ln), lines[-1] if lines else "?")


def _throughput(t: dict[str, Any], lines: list[str]) -> None:
    done = t.get("rounds_done", 0)
    lines.append(f"Throughput: UDP {PAYLOAD}-byte payload over veth, one iperf3 sender pinned to CPU {t['sender_cpu']},"
                 f" {done} round(s) x {t['seconds_per_trial']:g} s, conditions interleaved")
    if t.get("truncated"):
        lines.append(f"  NOTE: {t['truncated']}")
    lines.append(f"  agent = default config, attaches {', '.join(t.get('agent_default_hops', [])) or '?'}")
    if "agent-drops" in t.get("conditions", []):
        lines.append("  agent-drops = kfree_skb only (probes.exclude: every other hop): the always-on drop counting")
    lines.append(f"  {'workload':<9}{'condition':<12}{'n':>3}{'median pkt/s':>14}{'min':>12}{'max':>12}"
                 f"{'vs baseline':>13}{'per-round ratio':>20}   target")
    for workload, conds in t["summary"].items():
        for name, c in conds.items():
            s = c["pps"]
            if not s:
                continue
            r = c["ratio_of_medians"]
            pr = c["paired_ratio"]
            spread = "" if name == "baseline" else (f"{_pct(pr['min'])}..{_pct(pr['max'])}" if pr else "n/a")
            target = ""
            if name in AGENT_CONDITIONS and r is not None:
                target = f">= {_pct(1 - LOSS_TARGET)} {_verdict(r >= 1 - LOSS_TARGET)}"
            flag = (f"  [{c['trials_disturbed']} still disturbed after {MAX_RETRIES} retries: not in n]"
                       if c["trials_disturbed"] else "")
            lines.append(f"  {workload:<9}{name:<12}{c['trials_used']:>3}"
                         f"{s['median']:>14,.0f}{s['min']:>12,.0f}{s['max']:>12,.0f}"
                         f"{_pct(r) if name != 'baseline' else '':>13}{spread:>20}   {target}{flag}".rstrip())
        base = conds.get("baseline", {}).get("pps")
        if base:
            lines.append(f"  {'':<24}baseline spread (max-min)/median: "
                         f"{(base['max'] - base['min']) / base['median'] * 100:.1f}%")
    rerun = t.get("discarded_trials", [])
    if rerun:
        lines.append(f"  {len(rerun)} disturbed trial(s) were run again and not counted:")
        for d in rerun[:6]:
            lines.append(f"    round {d['round']} {d['condition']}/{d['workload']}: {d['disturbed']}")
        if len(rerun) > 6:
            lines.append("    ... (all in the JSON file, discarded_trials)")
    san = t.get("sanity", {})
    for name in AGENT_CONDITIONS:
        a = san.get(name)
        if not a or not a["drop_iptables_dropped"]:
            continue
        share = a["drop_agent_netfilter_drop"] / a["drop_iptables_dropped"] * 100
        other = f"; other reasons {a['drop_agent_other_reasons']}" if a["drop_agent_other_reasons"] else ""
        lines.append(f"  sanity, {name}, drop workload: iperf3 sent {a['drop_iperf3_sent']:,}, iptables dropped"
                     f" {a['drop_iptables_dropped']:,}, agent counted NETFILTER_DROP"
                     f" {a['drop_agent_netfilter_drop']:,.0f} ({share:.2f}% of iptables){other}")
        lines.append(f"  sanity, {name}, deliver workload: receiver lost {a['deliver_receiver_lost']:,},"
                     f" agent counted {a['deliver_agent_counted'] or 'nothing'}")
    dl = san.get("deliver_receiver_lost")
    if dl and dl["iperf3_sent"]:
        lines.append(f"  sanity, deliver workload, kept trials: receiver lost {dl['lost']:,} of {dl['iperf3_sent']:,}"
                     f" ({dl['lost'] / dl['iperf3_sent'] * 100:.3f}%)")
    if "bpftrace" in san:
        b = san["bpftrace"]
        lines.append(f"  sanity, bpftrace: counted {b['counted']:,} kfree_skb events machine-wide while it ran; in its"
                     f" trials iptables dropped {b['iptables_dropped']:,} and the receiver lost {b['receiver_lost']:,}")
    used = t.get("bpftrace_used")
    for a in t.get("bpftrace_attempts", []):
        mark = "attached" if a["attached"] else f"FAILED: {_error_line(a['error'])}"
        lines.append(f"  bpftrace {a['note']}: {mark}")
    if used is None:
        lines.append("  bpftrace reference: could not attach on this machine (see errors above)")


def render(results: dict[str, Any]) -> str:
    env = results["environment"]
    load = f"{' '.join(env['loadavg_start'])} -> {' '.join(env.get('loadavg_end', []))}"
    lines = [f"pktpath benchmarks -- {env['date_utc']}, kernel {env['kernel']},"
             f" {env['cpus']} CPUs ({env['cpu_model']}), {env['pktpath']}, load avg {load}"]
    if env.get("tracing_programs_at_start"):
        lines.append(f"NOTE: {env['tracing_programs_at_start']} other BPF tracing program(s) were attached at start"
                     " (someone else's agent or tracer): numbers may be noisy")
    for key, fn in (("startup", _startup), ("memory", _memory), ("throughput", _throughput)):
        if key in results:
            lines.append("")
            fn(results[key], lines)
    lines.append("")
    lines.append(f"status: {results['status']}; elapsed {results.get('elapsed_seconds', '?')} s")
    return "\n".join(lines)

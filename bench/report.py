"""The human-readable table printed at the end of a run (the JSON file has every raw number)."""

from __future__ import annotations

from typing import Any

from bench.throughput import AGENT_CONDITIONS, FLOOR_CONDITION, MAX_RETRIES, PAYLOAD, TARGETS


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
    lines.append(f"Start-up ({n} starts of `pktpath run`: no config file, the built-in defaults)")
    lines.append(f"  {'':<40}{'median':>10}{'max':>10}   target")
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
        lines.append(
            f"  {len(r['discarded'])} start(s) run again: other tasks kept a CPU busy during them"
            f" (PSI cpu pressure >= {r['max_pressure_ms']:.0f} ms, up to {worst:.0f} ms)"
        )
    pressured = [x for x in r["runs"] if (x.get("cpu_pressure_ms") or 0) >= r.get("max_pressure_ms", 1e9)]
    if pressured:
        lines.append(f"  {len(pressured)} start(s) kept although under CPU pressure (redo limit reached)")
    if r["runs"]:
        lines.append(f"  agent logged: {r['runs'][0]['serving_line']}")
        lines.append(f"  hops attached: {', '.join(r['runs'][0].get('hops', {})) or '?'}")
    lines.append(
        f"  all /readyz 200: {'yes' if r['all_ready'] else 'NO'};"
        f" kfree_skb program seen by bpftool at the log line: {'yes' if r['all_seen_by_bpftool'] else 'NO'};"
        f" all exited 0 on SIGTERM: {'yes' if r['all_exit_0'] else 'NO'}"
    )


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
    lines.append(
        f"  scrape latency median {m['scrape_ms']['median']:.1f} ms, max {m['scrape_ms']['max']:.1f} ms;"
        f" /metrics body {m['metrics_bytes']} bytes"
    )


def _scrape(r: dict[str, Any], lines: list[str]) -> None:
    lat = r["latency_ms"]
    lines.append(
        f"Scrape storm: {r['scrapers']} concurrent scrapers, one GET /metrics per connection,"
        f" {r['seconds']:g} s, default config"
    )
    overflows = "?" if r["listen_overflows"] is None else f"{r['listen_overflows']:,}"
    lines.append(
        f"  scrapes {r['scrapes']:,} ({r['scrapes_per_second']:,.1f}/s), errors {r['errors']:,},"
        f" listen queue overflows {overflows}"
    )
    lines.append(
        f"  latency p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms,"
        f" max {lat['max']:.1f} ms   target p99 < {r['p99_target_ms']:.0f} ms {_verdict(r['p99_ok'])}"
    )
    lines.append(
        f"  agent CPU {r['agent_cpu_ms_per_scrape']:.3f} ms per scrape ({r['agent_cpu_percent']:.1f}% of one"
        f" core during the storm); /metrics body {r['metrics_bytes']:,} bytes"
    )
    for err in r.get("first_errors", [])[:3]:
        lines.append(f"  error: {err}")


# How the throughput part and the paths part's overhead table judge a condition (bench/stats.py).
_BRACKETED = (
    "  each round opens and closes with a baseline trial; vs baseline = the median over the rounds of"
    " each trial / its round's baseline (the mean of those two)"
)


def _pct(r: float | None) -> str:
    return "-" if r is None else f"{r * 100:.1f}%"


def _error_line(error: str | None) -> str:
    """bpftrace follows its ERROR line with the program and a ~~~ marker; the ERROR line is the news."""
    lines = [ln.strip() for ln in (error or "").splitlines() if ln.strip()]
    return next((ln for ln in lines if "ERROR" in ln), lines[-1] if lines else "?")


def _throughput(t: dict[str, Any], lines: list[str]) -> None:
    done = t.get("rounds_done", 0)
    lines.append(
        f"Throughput: UDP {PAYLOAD}-byte payload over veth, one iperf3 sender pinned to CPU {t['sender_cpu']},"
        f" {done} round(s) x {t['seconds_per_trial']:g} s, conditions interleaved"
    )
    lines.append(_BRACKETED)
    if t.get("truncated"):
        lines.append(f"  NOTE: {t['truncated']}")
    lines.append(f"  agent = default config, attaches {', '.join(t.get('agent_default_hops', [])) or '?'}")
    runs = t.get("sanity", {}).get("attached", {})
    if "agent-counters" in t.get("conditions", []):
        hops = runs.get("agent-counters", {}).get("hops")
        lines.append(
            "  agent-counters = paths off (one_in, drop_one_in 0): the always-on counters alone, drops and"
            f" per-stage verdicts{', attached ' + ', '.join(hops) if hops else ''}"
        )
    if "agent-drops" in t.get("conditions", []):
        lines.append(
            "  agent-drops = kfree_skb only (probes.exclude: every other hop; one_in, drop_one_in 0):"
            " the always-on drop counting alone"
        )
    for name, seen in runs.items():
        if seen.get("unexpected"):
            lines.append(
                f"  NOTE: {name} also attached {', '.join(seen['unexpected'])}: its figures are not what its label says"
            )
    if FLOOR_CONDITION in t.get("conditions", []):
        lines.append(
            "  floor = an empty program on skb:kfree_skb, attached as the agent attaches it (tp_btf), drop workload"
            " only: the tracepoint's dispatch alone, the least any BPF drop counter costs here"
        )
    elif t.get("floor_error"):
        lines.append(f"  floor condition left out: {t['floor_error']}")
    lines.append(
        f"  {'workload':<9}{'condition':<12}{'n':>3}{'median pkt/s':>14}{'min':>12}{'max':>12}"
        f"{'vs baseline':>13}{'per-round ratio':>20}   target"
    )
    for workload, conds in t["summary"].items():
        for name, c in conds.items():
            s = c["pps"]
            if not s:
                continue
            r = c["vs_baseline"]
            pr = c["paired_ratio"]
            spread = f"{_pct(pr['min'])}..{_pct(pr['max'])}" if pr else "n/a"
            target = ""
            floor = TARGETS.get((workload, name))
            if floor is not None and r is not None:
                verdict = "no verdict" if c.get("all_disturbed") else _verdict(r >= floor)
                target = f">= {_pct(floor)} {verdict}"
            if c["trials_disturbed"] and c["trials_disturbed"] == c["trials_used"]:
                flag = f"  [all {c['trials_used']} trial(s) disturbed even after {MAX_RETRIES} retries]"
            elif c["trials_disturbed"]:
                flag = f"  [{c['trials_disturbed']} still disturbed after {MAX_RETRIES} retries: not in n]"
            else:
                flag = ""
            lines.append(
                f"  {workload:<9}{name:<12}{c['trials_used']:>3}"
                f"{s['median']:>14,.0f}{s['min']:>12,.0f}{s['max']:>12,.0f}"
                f"{_pct(r) if name != 'baseline' else '':>13}{spread:>20}   {target}{flag}".rstrip()
            )
        base = conds.get("baseline", {}).get("pps")
        if base:
            lines.append(
                f"  {'':<24}baseline spread (max-min)/median: {(base['max'] - base['min']) / base['median'] * 100:.1f}%"
            )
        if workload == "drop":
            _drop_costs(t.get("drop_costs") or {}, lines)
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
        lines.append(
            f"  sanity, {name}, drop workload: iperf3 sent {a['drop_iperf3_sent']:,}, iptables dropped"
            f" {a['drop_iptables_dropped']:,}, agent counted NETFILTER_DROP"
            f" {a['drop_agent_netfilter_drop']:,.0f} ({share:.2f}% of iptables){other}"
        )
        lines.append(
            f"  sanity, {name}, deliver workload: receiver lost {a['deliver_receiver_lost']:,},"
            f" agent counted {a['deliver_agent_counted'] or 'nothing'}"
        )
    dl = san.get("deliver_receiver_lost")
    if dl and dl["iperf3_sent"]:
        lines.append(
            f"  sanity, deliver workload, kept trials: receiver lost {dl['lost']:,} of {dl['iperf3_sent']:,}"
            f" ({dl['lost'] / dl['iperf3_sent'] * 100:.3f}%)"
        )
    if "bpftrace" in san:
        b = san["bpftrace"]
        lines.append(
            f"  sanity, bpftrace: counted {b['counted']:,} kfree_skb events machine-wide while it ran; in its"
            f" trials iptables dropped {b['iptables_dropped']:,} and the receiver lost {b['receiver_lost']:,}"
        )
    used = t.get("bpftrace_used")
    for a in t.get("bpftrace_attempts", []):
        mark = "attached" if a["attached"] else f"FAILED: {_error_line(a['error'])}"
        lines.append(f"  bpftrace {a['note']}: {mark}")
    if used is None:
        lines.append("  bpftrace reference: could not attach on this machine (see errors above)")


def _points(p: float | None) -> str:
    return "-" if p is None else f"{p:+.1f}"


def _drop_costs(d: dict[str, Any], lines: list[str]) -> None:
    """The drop flood's costs against each other (bench.throughput.drop_costs), in points of the baseline."""
    pad = f"  {'':<24}"
    ref = d.get("paths_reference", "agent-drops")  # summaries before agent-counters: always agent-drops
    target = f"   target <= +{d.get('paths_add_max_points', 0):.1f} {_verdict(d.get('paths_add_ok'))}"
    within = d.get("paths_add_within_trials")
    pr = d.get("paths_add_points_per_round")
    if within and within["points"] is None:
        on = within["hooks_on_s"]
        lines.append(
            f"{pad}paths cost, the windows inside each trial: no round could be measured: the path hooks were on"
            f" {on['min']:.3f}..{on['max']:.3f} s of each {d.get('drop_trial_seconds', 0):g} s trial, too long"
            " for a region with its reference (slow attach and detach)" + target
        )
    if within and within["points"] is not None:
        w = within["per_round"]
        lines.append(
            f"{pad}paths cost, the windows inside each trial (agent minus {ref}, per round):"
            f" median {within['points']:+.2f} points, {w['min']:+.2f}..{w['max']:+.2f}, {w['n']} rounds" + target
        )
        a, c, on = within["agent_points"], within["control_points"], within["hooks_on_s"]
        lines.append(
            f"{pad}  the window's region lacked {a['median']:+.2f} points in the agent's trials,"
            f" {c['median']:+.2f} in {ref}' (no windows); the path hooks were on"
            f" {on['median']:.3f} s of each trial ({on['min']:.3f}..{on['max']:.3f})"
        )
    if within and pr:
        lines.append(
            f"{pad}paths cost between trials ({ref} minus agent, per round): median"
            f" {_points(d['paths_add_between_trials_points'])} points, {_points(pr['min'])}..{_points(pr['max'])}"
            " (shown, not judged: trials drift apart by more than the target)"
        )
    elif not within and d.get("paths_add_points") is not None and pr:
        # A summary from before the windows were measured inside the trials.
        lines.append(
            f"{pad}paths cost (agent-drops minus agent, per round): median {_points(d['paths_add_points'])}"
            f" points, {_points(pr['min'])}..{_points(pr['max'])}" + target
        )
    if d.get("floor_ratio") is not None:
        counters = d.get("counters_over_floor_points")
        lines.append(
            f"  {'':<24}above the floor ({_pct(d['floor_ratio'])}): counting alone"
            f" {_points(d['counting_over_floor_points'])} points,"
            + ("" if counters is None else f" the always-on counters {_points(counters)} points,")
            + f" the default config {_points(d['default_over_floor_points'])} points"
        )


def _rate(s: dict[str, Any] | None) -> str:
    return "-" if not s else f"{s['median']:>10,.0f} {s['min']:>10,.0f} {s['max']:>10,.0f}"


def _paths(p: dict[str, Any], lines: list[str]) -> None:
    py = p.get("python")
    if py:
        lines.append(
            f"Packet paths, Python side on one core (in process, no kernel): {py['paths_per_run']:,} synthetic"
            f" paths of {py['hops_per_path']} hops ({py['spans_per_path']} spans each), {py['repeats']}"
            " interleaved repeat(s)"
        )
        lines.append(f"  {'stage':<32}{'unit':<7}{'median/s':>10} {'min':>10} {'max':>10}   {'spans/s (median)':>16}")
        for name, c in py["cases"].items():
            sp = c.get("spans_per_second")
            lines.append(
                f"  {name:<32}{c['unit']:<7}{_rate(c['per_second'])}   "
                f"{'' if not sp else format(sp['median'], ',.0f'):>16}".rstrip()
            )
        if "decode+assembler+encode, unlike" in py["cases"]:
            lines.append(
                "  unlike: the same records with another ifindex on every path, so no hop is like one before it"
                " (every decoder and encoder cache lookup misses)"
            )
        e = py["export_pipeline"]
        lines.append(
            f"  export pipeline (closed port): {e['ended']:,} spans ended, exported {e['exported']:,},"
            f" dropped {e['dropped']}"
        )
    o = p.get("overhead")
    if o:
        lines.append("")
        lines.append(
            f"Packet paths overhead: UDP {PAYLOAD}-byte payload delivered over veth,"
            f" {o['rounds_done']} round(s) x {o['seconds_per_trial']:g} s, conditions interleaved"
        )
        lines.append(_BRACKETED)
        lines.append(
            "  agent-drops = paths off (one_in, drop_one_in 0: the always-on counters only);"
            " agent-default = no config (paths on, 1 s windows every 10 s, no exporter);"
            " agent-default-export = the same exporting spans"
        )
        lines.append(
            f"  agent-paths = continuous, 1 in {o['one_in']}, exporting"
            f" ({', '.join(o['hops'].get('agent-paths', [])) or '?'})"
        )
        lines.append(
            f"  {'condition':<20}{'n':>3}{'median pkt/s':>14}{'min':>12}{'max':>12}{'vs baseline':>13}"
            f"{'per-round ratio':>20}   target"
        )
        for name, c in o["summary"].items():
            s = c["pps"]
            if not s:
                continue
            r, pr = c["vs_baseline"], c["paired_ratio"]
            spread = "" if name == "baseline" else (f"{_pct(pr['min'])}..{_pct(pr['max'])}" if pr else "n/a")
            target = (
                f">= {_pct(1 - o['target_loss'])} {_verdict(r >= 1 - o['target_loss'])}"
                if name.startswith("agent-default") and r is not None
                else ""
            )
            flag = f"  [{c['trials_disturbed']} disturbed]" if c["trials_disturbed"] else ""
            lines.append(
                f"  {name:<24}{c['trials_used']:>3}"
                f"{s['median']:>14,.0f}{s['min']:>12,.0f}{s['max']:>12,.0f}"
                f"{_pct(r) if name != 'baseline' else '':>13}{spread:>20}   {target}{flag}".rstrip()
            )
        base = o["summary"].get("baseline", {}).get("pps")
        if base:
            spread_b = (base["max"] - base["min"]) / base["median"] * 100
            lines.append(f"  baseline spread (max-min)/median: {spread_b:.1f}%")
        lines.append(
            "  agent-paths-kernel = agent-paths with the agent process stopped (SIGSTOP) during the trial:"
            " its BPF programs only"
        )
        for name in ("agent-default", "agent-default-export", "agent-paths", "agent-paths-kernel"):
            a = o["summary"].get(name, {})
            if not a.get("packets_sent"):
                continue
            lines.append(
                f"  {name}: iperf3 sent {a['packets_sent']:,}, paths started {a['paths_started']:,.0f}"
                f" (1 in {a['packets_sent'] / max(a['paths_started'], 1):,.0f}), events lost"
                f" {a['events_lost']:,.0f}, refused (budget) {a['paths_refused']:,.0f}; receiver lost"
                f" {a['receiver_lost']:,}; agent CPU {a['agent_cpu_seconds']:.2f} s"
            )
    ld = p.get("load")
    if ld and ld["trials"]:
        lines.append("")
        lines.append(
            f"Agent under path load: one_in 1, UDP {PAYLOAD}-byte payload at fixed rates,"
            f" {ld['seconds_per_trial']:g} s each, {ld['rounds_done']} round(s)"
        )
        lines.append(
            f"  {'run':<14}{'rnd':>4}{'sent pkt/s':>11}{'CPU %':>7}{'RSS MB':>8}{'anon MB':>8}{'started':>10}"
            f"{'finished':>10}{'refused':>10}{'ev. lost':>10}{'spans dropped':>15}"
        )
        for t in ld["trials"]:
            anon = t.get("status_kb", {}).get("RssAnon")
            lines.append(
                f"  {t['label']:<14}{t['round']:>4}{t['pps']:>11,.0f}{t['cpu_percent']:>7.1f}"
                f"{t['rss_mb']:>8.1f}{(f'{anon / 1024:.1f}' if anon is not None else '-'):>8}"
                f"{t['paths_started']:>10,.0f}{t['paths_finished']:>10,.0f}"
                f"{t['paths_refused']:>10,.0f}{t['events_lost']:>10,.0f}{t['spans_dropped']:>15,.0f}"
            )
        lines.append("  started/finished/refused/lost: deltas over the trial; started should equal sent x seconds")
        lines.append(
            "  unlimited, budget: spans over OTLP/gRPC; otlp/http: over OTLP/HTTP; to a closed port (every span"
            " counted as dropped).  anon MB: the private part of RSS (RssAnon); the rest is shared library code"
        )
        if any(t.get("label", "").endswith(" live") for t in ld["trials"]):
            lines.append(
                "  grpc live, http live: to an OTLP receiver in its own process, every span delivered"
                " (spans dropped should be 0)"
            )
    fl = p.get("floor")
    if fl:
        lines.append("")
        lines.append("Memory floor: a bare process that imports the agent's modules, then builds the traces pipeline")
        names = {
            "none": "agent's modules only",
            "grpc": "+ traces over OTLP/gRPC",
            "http/protobuf": "+ traces over OTLP/HTTP",
        }
        lines.append(f"  {'process':<28}{'RSS MB':>8}{'anon MB':>9}{'file MB':>9}")
        for case, r in fl.items():
            mb = [r[k] / 1024 for k in ("rss_kb", "anon_kb", "file_kb")]
            lines.append(f"  {names.get(case, case):<28}{mb[0]:>8.1f}{mb[1]:>9.1f}{mb[2]:>9.1f}")


def _hops_kernel(label: str, r: dict[str, Any], lines: list[str]) -> None:
    if r.get("status") != "ok" and "end_to_end" not in r:
        lines.append(f"Attach families per hop, {label}: {r.get('status', '?')}")
        return
    lines.append(
        f"Attach families per hop, {label}: kernel {r['kernel']}, {r.get('rounds_done', 0)} round(s) x"
        f" {r['seconds_per_trial']:g} s, UDP {r['payload_bytes']}-byte payload dropped by iptables,"
        " sender on CPU 0" + (f"; {r['guest']}" if r.get("guest") else "")
    )
    if r.get("truncated"):
        lines.append(f"  {r['truncated']}")
    lines.append(
        f"  {'variant':<26}{'n':>3}{'median pkt/s':>14}{'vs none':>9}{'per-round':>17}"
        f"{'+ns/pkt':>9}{'ns/run':>8}{'-empty':>8}{'runs/pkt':>9}"
    )
    e2e, prog = r["end_to_end"], r.get("in_program", {})
    from bench.hopcost import net_of_empty  # local: report.py is imported by every bench

    net = net_of_empty(prog)
    for name, s in e2e.items():
        pps = s["pps"]
        ratio, added = s["ratio"], s["added_ns"]
        st = prog.get(name, {})
        nsr, rpp = st.get("ns_per_run"), st.get("runs_per_packet")
        cells = [
            f"  {name:<26}{s['trials']:>3}{pps['median'] if pps else 0:>14,.0f}",
            f"{ratio['median']:>9.1%}" if ratio and name != "none" else f"{'':>9}",
            f"{ratio['min']:>8.1%}..{ratio['max']:.1%}" if ratio and name != "none" else f"{'':>17}",
            f"{added['median']:>9.0f}" if added and name != "none" else f"{'':>9}",
            f"{nsr['median']:>8.1f}" if nsr else f"{'':>8}",
            f"{net[name]:>8.1f}" if name in net else f"{'':>8}",
            f"{rpp['median']:>9.3f}" if rpp else f"{'':>9}",
        ]
        line = "".join(cells).rstrip()
        if s.get("disturbed"):
            line += f"  [{s['disturbed']} disturbed]"
        lines.append(line)
    missing = {n: v["unavailable"] for n, v in r.get("variants", {}).items() if "unavailable" in v}
    by_flavor: dict[str, list[str]] = {}
    for name, why in missing.items():
        by_flavor.setdefault(name.split("/")[1], []).append(why)
    for flavor, whys in by_flavor.items():  # one line per flavor: the same refusal for every hop
        lines.append(f"  {flavor}: not attached here ({len(whys)} variant(s)): {whys[0][:110]}")
    for hop in r.get("hops", {}):
        flavors = {
            fl: e2e[n]["added_ns"]["median"]
            for fl in ("tp_btf", "raw_tp", "tracepoint")
            if (n := f"{hop}/{fl}/empty") in e2e and e2e[n]["added_ns"]
        }
        if len(flavors) > 1 and flavors.get("tp_btf"):
            lines.append(
                f"  {hop:<6}tracepoint flavors, empty, +ns/pkt: "
                + ", ".join(f"{fl} {ns:.0f} ({ns / flavors['tp_btf']:.2f}x)" for fl, ns in flavors.items())
            )
    for c in r.get("comparisons", []):
        ratios = c.get("ratio_to_tracepoint", {})
        costs = ", ".join(
            f"{f} {ns:.0f} ns" + (f" ({ratios[f]:.2f}x)" if f in ratios and len(ratios) > 1 else "")
            for f, ns in sorted(c["added_ns"].items(), key=lambda kv: kv[1])
        )
        verdict = (
            f"cheapest {c['cheapest']}; agent picks {c['agent_choice'] or '-'}"
            f" (candidates: {', '.join(c['agent_candidates']) or 'none'})"
        )
        if c.get("cheaper_than_choice_every_round") is not None:
            verdict += f"; cheaper in every round: {'yes' if c['cheaper_than_choice_every_round'] else 'no'}"
        lines.append(f"  {c['hop']:<6}{c['body']:<11} +ns/pkt: {costs or '-'} -> {verdict}")


def _hops(h: dict[str, Any], lines: list[str]) -> None:
    for i, (label, r) in enumerate(h.items()):
        if i:
            lines.append("")
        _hops_kernel(label, r, lines)


def _attach(a: dict[str, Any], lines: list[str]) -> None:
    from bench.attach import render  # local: report.py is imported by every bench

    render(a, lines)


def render(results: dict[str, Any]) -> str:
    env = results["environment"]
    load = f"{' '.join(env['loadavg_start'])} -> {' '.join(env.get('loadavg_end', []))}"
    lines = [
        f"pktpath benchmarks -- {env['date_utc']}, kernel {env['kernel']},"
        f" {env['cpus']} CPUs ({env['cpu_model']}), {env['pktpath']}, load avg {load}"
    ]
    src = results.get("source") or {}
    if src:
        state = (
            "not a git checkout"
            if src.get("commit") is None
            else (f"commit {src['commit']}" + (" + UNCOMMITTED CHANGES (dirty)" if src.get("dirty") else ""))
        )
        lines.append(f"measured: {state}" + (f"; agent {src['pktpath_from']}" if src.get("pktpath_from") else ""))
    if env.get("guest"):
        g = env["guest"]
        lines.append(
            f"in a guest: {g['kernel_package']} under QEMU ({g['qemu_opts']}; {g['real_seconds']:g} s of real time):"
            " guest time counts instructions (2 ns each); compare ratios, not times, with the host's"
        )
    if env.get("tracing_programs_at_start"):
        lines.append(
            f"NOTE: {env['tracing_programs_at_start']} other BPF tracing program(s) were attached at start"
            " (someone else's agent or tracer): numbers may be noisy"
        )
    for key, fn in (
        ("startup", _startup),
        ("memory", _memory),
        ("scrape", _scrape),
        ("throughput", _throughput),
        ("paths", _paths),
        ("hops", _hops),
        ("attach", _attach),
    ):
        if key in results:
            lines.append("")
            fn(results[key], lines)
    lines.append("")
    lines.append(f"status: {results['status']}; elapsed {results.get('elapsed_seconds', '?')} s")
    return "\n".join(lines)

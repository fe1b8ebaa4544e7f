"""`python -m bench`: run the benchmarks, print a table, write bench/results/latest.json (every raw number,
git-ignored) and a small summary, bench/results/<commit>-<part>.json, to commit (bench/summary.py)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench.agent import pktpath_bin
from bench.attach import REPS, measure_attach
from bench.guest import GUEST_TIME_LIMIT_S, inner_args, measure_in_guest
from bench.hops import measure_hops
from bench.paths import measure_paths
from bench.procs import BenchError, tool_version, tracing_programs
from bench.report import render
from bench.scrape import SCRAPERS, measure_scrape
from bench.startup import measure_memory, measure_startup
from bench.summary import RESULTS_DIR, source_state, summary, summary_name
from bench.throughput import measure_throughput

RESULTS = RESULTS_DIR / "latest.json"
# `make bench` must finish in about 12 minutes on a 2-core machine; the measured phases stop
# early (and say so) rather than run past this.
TIME_LIMIT_S = 600.0
# Throughput trials last one default sampling-window period (sampling.window_period_seconds): the
# default config attaches the path hooks around a 1 s window every 10 s, so a trial of any other
# length would hold a varying share of window time.
TRIAL_SECONDS = 10.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="one round, short trials: a smoke run (~1 min)")
    p.add_argument(
        "--only",
        choices=("startup", "scrape", "throughput", "paths", "hops", "attach"),
        help="run one part only (scrape: /metrics under concurrent scrapers; paths: packet-path costs; "
        "hops: each attach family's cost per hop, on this kernel and in a 6.12 guest under QEMU; "
        "attach: what attaching and detaching the path hooks costs, here and in guests; "
        "paths, hops and attach run only when asked for)",
    )
    p.add_argument(
        "--guest",
        default="6.12",
        metavar="SERIES",
        help="hops, attach: the stock kernel to boot under QEMU (scripts/vm/fetch-kernels); 'none' to skip; "
        "attach takes a comma-separated list (6.12,6.1)",
    )
    p.add_argument("--no-host", action="store_true", help="hops, attach: measure in the guest only")
    p.add_argument(
        "--in-guest",
        metavar="SERIES",
        default=None,
        help="run the parts asked for (startup, scrape, throughput, paths) inside this stock kernel under "
        "QEMU with -icount, as the hops part measures its guest (bench/guest.py); the summary is named "
        "<commit>-<part>-in-<SERIES>.json",
    )
    p.add_argument(
        "--reps",
        type=int,
        default=None,
        help=f"attach: repetitions of each attach/detach (default {REPS}; --quick: 10)",
    )
    p.add_argument("--rounds", type=int, default=None, help="throughput rounds (default 5; --quick: 1)")
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="seconds per throughput trial (default 10, a window period; --quick: 2)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=TIME_LIMIT_S,
        metavar="SECONDS",
        help=f"how long the measured phases of startup, scrape, throughput and paths may take; rounds stop "
        f"early (and say so) to stay within it (default {TIME_LIMIT_S:g}; an --in-guest run counts guest "
        "seconds, and its guest gives up after "
        f"{GUEST_TIME_LIMIT_S:g} s of real time)",
    )
    p.add_argument("--starts", type=int, default=None, help="agent start-ups to time (default 10; --quick: 3)")
    p.add_argument(
        "--scrape-seconds",
        type=float,
        default=None,
        help=f"length of the scrape storm, {SCRAPERS} scrapers (default 10; --quick: 5)",
    )
    p.add_argument(
        "--pktpath",
        metavar="PATH",
        default=None,
        help="the pktpath console script to measure (default: beside this python, else PATH)",
    )
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    p.add_argument(
        "--summary-dir",
        type=Path,
        default=RESULTS_DIR,
        help=f"where the summary JSON goes (default {RESULTS_DIR}); named <commit>[-dirty]-<part>.json",
    )
    return p


def _log(msg: str) -> None:
    # Progress goes to stderr so stdout holds only the final table.
    print(msg, file=sys.stderr, flush=True)


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    # Same path as Ctrl-C: unwind, so every `finally` stops processes and deletes namespaces.
    raise KeyboardInterrupt


def _environment(binary: str) -> dict[str, Any]:
    cpu_model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "pktpath_bin": binary,
        "pktpath": tool_version([binary, "--version"]),
        "iperf3": tool_version(["iperf3", "--version"]),
        "bpftrace": tool_version(["bpftrace", "--version"]),
        "bpftool": tool_version(["bpftool", "--version"]),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def _measure_here(
    args: argparse.Namespace,
    results: dict[str, Any],
    binary: str,
    deadline: float,
) -> None:
    """The parts asked for, on this machine's kernel, into `results`."""
    # Five: on this 2-core VM a 10 s trial's baseline moves by up to 7 % from round to round, and
    # the median of three let one slow round decide the delivered figure (bench/results/b786835-default.json).
    rounds = args.rounds or (1 if args.quick else 5)
    seconds = args.seconds or (2.0 if args.quick else TRIAL_SECONDS)
    starts = args.starts or (3 if args.quick else 10)
    scrape_seconds = args.scrape_seconds or (5.0 if args.quick else 10.0)
    if args.only in (None, "startup"):
        _log(f"start-up: {starts} starts of {binary} ...")
        results["startup"] = measure_startup(starts, binary, deadline)
        _log("memory: idle 2 s, then 100 scrapes ...")
        results["memory"] = measure_memory(binary)
    if args.only in (None, "scrape"):
        _log(f"scrape storm: {SCRAPERS} scrapers for {scrape_seconds:g} s ...")
        results["scrape"] = measure_scrape(binary, scrape_seconds)
    if args.only in (None, "throughput"):
        if shutil.which("iperf3") is None:
            raise BenchError("iperf3 not installed (make deps-bench)")
        _log(f"throughput: {rounds} round(s) x up to 4 conditions x 2 workloads x {seconds:g} s ...")
        results["throughput"] = measure_throughput(rounds, seconds, deadline, _log, binary)
    if args.only == "paths":
        if shutil.which("iperf3") is None:
            raise BenchError("iperf3 not installed (make deps-bench)")
        results["paths"] = measure_paths(binary, rounds, seconds, deadline, _log, quick=args.quick)
    if args.only == "hops":
        if shutil.which("iperf3") is None:
            raise BenchError("iperf3 not installed (make deps-bench)")
        # Own bounds (the host part and the VM each have a time limit): a guest under software
        # emulation takes minutes, far past TIME_LIMIT_S.  Trials default to 2 s here.
        results["hops"] = {}
        measure_hops(
            results["hops"],
            args.rounds or (1 if args.quick else None),
            args.seconds or (1.0 if args.quick else 2.0),
            1.0 if args.quick else 2.0,
            _log,
            host=not args.no_host,
            guest=None if args.guest == "none" else args.guest,
        )
    if args.only == "attach":
        if shutil.which("iperf3") is None:
            raise BenchError("iperf3 not installed (make deps-bench)")
        # Own bounds, like hops: each kernel's run has a time limit, a guest's is minutes.
        results["attach"] = {}
        guests = [] if args.guest == "none" else [g for g in args.guest.split(",") if g]
        measure_attach(
            results["attach"],
            args.reps or (10 if args.quick else REPS),
            args.rounds or (1 if args.quick else 5),
            _log,
            host=not args.no_host,
            guests=guests,
        )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root (loads BPF programs, creates network namespaces)", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    deadline = t0 + args.time_limit
    signal.signal(signal.SIGTERM, _on_sigterm)
    # A shell starts background jobs with SIGINT ignored, and Python keeps an inherited ignore;
    # the benchmark must stay interruptible (and clean up) however it was started.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    try:
        binary = args.pktpath or pktpath_bin()
        if not os.access(binary, os.X_OK):
            raise BenchError(f"{binary}: not an executable")
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    source = source_state()
    if args.pktpath:
        # The summary names the commit of this tree; an agent from elsewhere is its own business.
        source["pktpath_from"] = binary
    results: dict[str, Any] = {
        "status": "running",
        "quick": args.quick,
        "source": source,
        "environment": _environment(binary),
    }
    seen = tracing_programs()
    if seen is not None:
        results["environment"]["tracing_programs_at_start"] = seen.foreign()
    status = 0
    part = args.only or "default"
    try:
        if args.in_guest:
            if args.only in ("hops", "attach"):
                raise BenchError(f"--in-guest runs startup, scrape, throughput or paths, not {args.only} (see --guest)")
            part = f"{part}-in-{args.in_guest}"
            results = measure_in_guest(args.in_guest, inner_args(argv if argv is not None else sys.argv[1:]), _log)
            results["source"] = source  # the guest ran this tree, but cannot ask git (it is read-only there)
            status = 0 if results.get("status") == "ok" else 1
        else:
            _measure_here(args, results, binary, deadline)
            results["status"] = "ok"
    except KeyboardInterrupt:
        results["status"] = "interrupted"
        _log("bench: interrupted; cleaned up")
        status = 130
    except BenchError as exc:
        results["status"] = f"error: {exc}"
        _log(f"bench: {exc}")
        status = 1
    finally:
        results["elapsed_seconds"] = round(time.monotonic() - t0, 1)
        if not args.in_guest:  # a guest's run says its own
            results["environment"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    printed = render(results)
    print(printed)
    _log(f"results: {args.output}")
    summary_path = args.summary_dir / summary_name(source, part, args.quick)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(
        json.dumps(summary(results, printed, argv if argv is not None else sys.argv[1:]), indent=1) + "\n"
    )
    _log(f"summary: {summary_path}" + (" (uncommitted changes: not for docs/benchmarks.md)" if source["dirty"] else ""))
    return status

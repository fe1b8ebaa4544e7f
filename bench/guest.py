"""`python -m bench --in-guest 6.12 [--only PART] ...`: the same benchmark parts, measured inside a stock
kernel booted under QEMU, where fentry and kprobes attach (this machine's kernel allows tracepoints only).

The guest runs `python -m bench` on this very tree (tests/vm/runner.py shares it) with the options given,
under `-icount` like the hops part (bench/hops.py: GUEST_QEMU_OPTS): guest time counts instructions,
2 ns each, so the figures are ratios of instructions, which neither this machine's load nor another
guest can move.  Absolute times are those of a 500 MIPS machine with no caches worth the name: only
the ratios within one run compare with the host's (docs/benchmarks.md says which).

The guest's raw results come back through the shared directory; this side adds what the guest cannot
know (the commit measured, the kernel package, QEMU's options) and prints and summarizes them as any run.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.hops import GUEST_QEMU_OPTS, guest_run
from bench.procs import BenchError, read_worker_result

# The guest command's own bound (boot excluded).  A default run (start-ups, scrapes, throughput) takes
# about 15 minutes of real time on this machine's TCG; the paths part about as long.
GUEST_TIME_LIMIT_S = 2400.0
BOOT_ALLOWANCE_S = 180.0


def measure_in_guest(series: str, bench_args: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    """Run `python -m bench *bench_args` in the `series` guest; its results document, with the guest's
    facts in environment["guest"]."""
    from tests.vm.runner import VMError, kernel_image, kernel_package

    try:
        kernel_image(series)
    except VMError as exc:
        raise BenchError(str(exc)) from exc
    with tempfile.TemporaryDirectory(prefix="pktpath-bench-guest-") as tmp:
        results = Path(tmp)
        out = results / "latest.json"
        cmd = [
            sys.executable,
            "-m",
            "bench",
            *bench_args,
            "--output",
            str(out),
            "--summary-dir",
            str(results / "summaries"),
        ]
        log(f"in-guest: booting {series} under QEMU ({GUEST_QEMU_OPTS}): python -m bench {' '.join(bench_args)}")
        run = guest_run(series, cmd, results, GUEST_TIME_LIMIT_S + BOOT_ALLOWANCE_S, log, set(), set())
        if isinstance(run, str):
            raise BenchError(f"the {series} guest did not start: {run}")
        doc = read_worker_result(out, f"the {series} guest")
        if "environment" not in doc:
            raise BenchError(f"{doc.get('status')}: {run.describe()}")
        doc["environment"]["guest"] = {
            "series": series,
            "kernel_package": kernel_package(series),
            "qemu_opts": GUEST_QEMU_OPTS,
            "outcome": run.describe(),
            "real_seconds": round(run.seconds, 1),
        }
        return doc


def inner_args(argv: list[str]) -> list[str]:
    """The command line for the guest's `python -m bench`: this one's, less the options that only mean
    something here (which guest, where results go: the guest writes into the shared directory)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--in-guest", "--output", "--summary-dir"):
            skip = True
        elif not arg.startswith(("--in-guest=", "--output=", "--summary-dir=")):
            out.append(arg)
    return out

"""The kernel tests, again, on stock Debian kernels booted under QEMU (make test-kernels).

Each test boots one kernel (fetched by scripts/vm/fetch-kernels) with
software emulation, runs a subset of tests/kernel with pytest inside it as
root, and passes when that pytest's junit xml shows every test passed.  The
subset proves the probes load, attach and count on that kernel: every drop
reason of test_drops.py, the hop/attach report of `pktpath check`, and the
function hooks of tests/vm/guest (which the host's kernel refuses).

The probe mode reaches the guest as PKTPATH_TEST_PROBE_MODE (the kernel
tests' agent fixtures turn it into `probes.mode`, the guest tests also into
`pktpath trace --probe-mode`).  Cost: one boot plus the subset, 2-8 minutes (up to 13 on a busy machine)
per kernel and mode under TCG (docs/kernels.md).
"""

from __future__ import annotations

import json
import os
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.vm.runner import REPO, VENV_BIN, VMError, kernel_image, kernel_package, run_in_kernel

pytestmark = pytest.mark.vm

KERNELS = ("5.10", "6.1", "6.12")
# One entry per probe mode the matrix runs.  "kprobe" forces the function hooks
# onto kprobes (fentry otherwise wins on both kernels); hops with only a
# tracepoint keep it.  "tracepoint" mode is what the host itself runs.
MODES = ("auto", "kprobe")
GUEST_TESTS = (
    "tests/kernel/test_drops.py",
    "tests/kernel/test_agent.py::test_check_reports_modes_and_hops",
    # Function hooks (fentry/kprobe) and their verdict counters: only a stock
    # kernel lets them attach, so these run in the guests only.
    "tests/vm/guest",
)
# Per mode, when not all of GUEST_TESTS: kprobe mode changes only how the
# function hooks attach, and tests/vm/guest covers every one of them (plus the
# kfree_skb tracepoint staying attached); test_drops.py counts through that
# same tracepoint in every mode, so it runs once per kernel, and so do the
# OTLP path tests (test_hooks.py traces kprobe hops too) (docs/kernels.md: cost).
MODE_TESTS = {"kprobe": ("tests/vm/guest", "--ignore=tests/vm/guest/test_paths.py")}
# Host-side bound for one boot + subset: the slowest run measured, 5.10 `auto` with other
# engineers' VMs on the machine's two cores, took 765 s (docs/kernels.md: cost).
TIMEOUT = float(os.environ.get("PKTPATH_VM_TIMEOUT", "1200"))


@dataclass
class JunitReport:
    tests: int = 0
    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # test id -> the end of its traceback
    skipped: dict[str, str] = field(default_factory=dict)


def read_junit(path: Path) -> JunitReport:
    report = JunitReport()
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        report.tests += 1
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        skipped = case.find("skipped")
        if problem is not None:
            # The message attribute is cut short by pytest; the text has the whole traceback.
            text = problem.text or problem.get("message") or problem.tag
            report.failed[name] = "\n".join(text.strip().splitlines()[-25:])
        elif skipped is not None:
            report.skipped[name] = skipped.get("message", "")
        else:
            report.passed.append(name)
    return report


def summarize_check(path: Path) -> str:
    """`pktpath check --json` of the guest, in one line: attach types, then each hop's family."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        text = path.read_text(errors="replace").strip() if path.exists() else ""
        return f"pktpath check gave no report: {text[-300:] or 'no output'}"
    attach = " ".join(f"{k}={'yes' if v == 'yes' else 'no'}" for k, v in report.get("attach_types", {}).items())
    hops = ", ".join(f"{name}={hop.get('attached') or 'NONE'}" for name, hop in report.get("hops", {}).items())
    return f"{attach}; hops: {hops}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("series", KERNELS)
def test_kernel_tests_pass_in_guest(series: str, mode: str, tmp_path: Path, kernel_matrix: list[str]) -> None:
    try:
        kernel_image(series)
    except VMError as e:
        pytest.fail(str(e), pytrace=False)
    results = tmp_path / "results"
    junit = results / "junit.xml"
    check = results / "check.json"
    pytest_cmd = [
        str(VENV_BIN / "python"),
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--durations=10",
        # tmp_path of the guest tests (agent configs and logs) lands in
        # the shared results dir, for reading after a failure.
        f"--basetemp={results / 'pytest-tmp'}",
        f"--junitxml={junit}",
        "--rootdir",
        str(REPO),
        *MODE_TESTS.get(mode, GUEST_TESTS),
    ]
    # What the kernel supports comes first, in the same boot: it explains a
    # failure below and costs a few seconds.
    check_cfg = results / "check.yaml"
    results.mkdir(parents=True, exist_ok=True)
    check_cfg.write_text(f"probes:\n  mode: {mode}\n")
    script = (
        f"pktpath check --json -c {shlex.quote(str(check_cfg))} >{shlex.quote(str(check))} 2>&1; "
        f"exec {shlex.join(pytest_cmd)}"
    )
    result = run_in_kernel(
        series, ["sh", "-c", script], results, timeout=TIMEOUT, env={"PKTPATH_TEST_PROBE_MODE": mode}
    )

    where = f"{result.describe()} [{kernel_package(series)}, mode {mode}]"
    supports = summarize_check(check)
    report = read_junit(junit) if junit.exists() else None
    outcome = f"{len(report.passed)}/{report.tests} guest tests passed" if report else "no junit xml"
    kernel_matrix.append(f"{series} {mode}: {outcome} in {result.seconds:.0f}s ({kernel_package(series)}); {supports}")

    if report is None:
        pytest.fail(f"{where}: the guest wrote no junit xml\n{supports}\n{_tail(result.log())}", pytrace=False)
    if report.failed:
        failures = "\n\n".join(f"--- {name}\n{text}" for name, text in report.failed.items())
        pytest.fail(
            f"{where}: {len(report.failed)} of {report.tests} guest tests failed\n"
            f"{series} supports: {supports}\n\n{failures}",
            pytrace=False,
        )
    if not report.tests or report.skipped:
        pytest.fail(f"{where}: guest ran {report.tests} tests, skipped {report.skipped}", pytrace=False)
    assert result.status == 0, f"{where}\n{_tail(result.log())}"


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])

"""tests/vm runs on the host and boots guests; tests/vm/guest runs only inside them.

The matrix also prints what each kernel booted, cost and supports, passed or
not, at the end of the run (CI logs keep the cost).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.vm.runner import GUEST_MARK

HERE = Path(__file__).parent
MATRIX_LINES = pytest.StashKey[list[str]]()


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # On the host these would test the host's kernel (which refuses fentry and
    # kprobes); test_kernels.py runs them in each guest.
    if collection_path == HERE / "guest" and GUEST_MARK not in os.environ:
        return True
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm: boots a stock kernel under QEMU (tests/vm, make test-kernels)")
    config.stash[MATRIX_LINES] = []


@pytest.fixture
def kernel_matrix(request: pytest.FixtureRequest) -> list[str]:
    """Append one line per run; they are shown in the terminal summary."""
    return request.config.stash[MATRIX_LINES]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(MATRIX_LINES, [])
    if lines:
        terminalreporter.section("kernel matrix")
        for line in lines:
            terminalreporter.write_line(line)

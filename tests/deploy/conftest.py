"""Deploy tests: the Helm chart, the alert rules, the dashboard, the systemd unit and the Dockerfile.

Static checks need no privilege. Tests that run the real agent (marked `kernel`, like
tests/kernel) load BPF programs and build lab namespaces: they need root and say so if it is
missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.agent_process import is_root

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/deploy" in str(item.fspath) and item.get_closest_marker("kernel") and not is_root():
            item.add_marker(pytest.mark.skip(reason="needs root: loads BPF programs, creates namespaces"))


def require_tool(name: str, package: str) -> str:
    """The tool's path, or a failure (never a skip): an untested artifact must not pass quietly."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: install the Debian package {package} (`make deps` does)")
    return found

"""Kernel tests load real BPF programs: they need root, and say so if it is missing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agent_process import AgentProcess, is_root


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/kernel" in str(item.fspath):
            item.add_marker(pytest.mark.kernel)
            if not is_root():
                item.add_marker(pytest.mark.skip(reason="needs root: loads BPF programs, creates namespaces"))


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One agent for the module, started as a user starts it, stopped with SIGTERM."""
    proc = AgentProcess.start(tmp_path_factory.mktemp("agent"))
    yield proc
    status = proc.stop()
    assert status == 0, proc.log()

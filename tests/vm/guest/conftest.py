"""One agent for every guest test module: starting one costs seconds under TCG."""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.agent_process import AgentProcess

MODE = os.environ.get("PKTPATH_TEST_PROBE_MODE", "auto")
EXPECTED_FAMILY = {"auto": {"fentry", "kprobe"}, "fentry": {"fentry"}, "kprobe": {"kprobe"}}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`before_agent` tests first: the session agent below, once started, holds nf_tables
    and ip_tables (a hook on a module function holds its module) until the session ends."""
    items.sort(key=lambda item: item.get_closest_marker("before_agent") is None)


@pytest.fixture(scope="session")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    # nft_do_chain lives in the nf_tables module and ipt_do_table in ip_tables: the agent
    # attaches to module functions that are loaded when it starts (docs/kernels.md), as on a
    # host whose firewall is up.
    subprocess.run(["modprobe", "-a", "nf_tables", "ip_tables", "iptable_filter"], check=True)
    # Loading and verifying every program takes 5-10 s under emulation (TCG), and over 20 s when
    # another VM shares the machine's two cores: a slow start is not what these tests test.
    proc = AgentProcess.start(tmp_path_factory.mktemp("agent"), ready_timeout=90.0)
    yield proc
    assert proc.stop() == 0, proc.log()


@functools.cache
def module_btf() -> bool:
    """Does this kernel give modules BTF (5.11+, CONFIG_DEBUG_INFO_BTF_MODULES)?  Without it (5.10)
    a hook on a module function takes a kprobe only, and reads only the types vmlinux's BTF has:
    struct xt_table (ipt_do_table), none of nf_tables' (nft_do_chain: no hook at all)."""
    subprocess.run(["modprobe", "nf_tables"], check=True)
    return os.path.exists("/sys/kernel/btf/nf_tables")


def attached(agent: AgentProcess, probe: str) -> set[str]:
    samples = agent.scrape()["pktpath_probe_attached"]
    return {dict(k)["attach_type"] for k, v in samples.items() if dict(k)["probe"] == probe and v == 1}

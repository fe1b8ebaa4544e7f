"""One agent for every guest test module: starting one costs seconds under TCG."""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent_process import AgentProcess, pktpath_bin
from tests.kernel.lab import Lab

MODE = os.environ.get("PKTPATH_TEST_PROBE_MODE", "auto")
EXPECTED_FAMILY = {"auto": {"fentry", "kprobe"}, "fentry": {"fentry"}, "kprobe": {"kprobe"}}
RELEASE = tuple(int(x) for x in platform.release().split("-")[0].split(".")[:2])


def built_in(option: str) -> bool:
    """Is `option` built into the guest kernel (its deb's config, which the runner hands over)?"""
    path = os.environ.get("PKTPATH_VM_KERNEL_CONFIG")
    return path is not None and f"{option}=y" in Path(path).read_text().splitlines()


# Sampling windows run the function hooks as kprobe.multi links (exporter/loader/window_links.py)
# where the kernel has them (5.18+ built with CONFIG_FPROBE: Debian's 6.12, not its 6.1) and the
# mode does not force fentry.
WINDOW_LINKS = RELEASE >= (5, 18) and built_in("CONFIG_FPROBE") and MODE != "fentry"
WINDOW_FAMILY = {"kprobe_multi"} if WINDOW_LINKS else EXPECTED_FAMILY.get(MODE, {MODE})


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


def trace_one(lab: Lab, send: list[str], ns: str, dst: str = "") -> dict[str, Any]:
    """`pktpath trace` of the first packet towards `dst` (the server) while `send` runs in `ns`."""
    proc = subprocess.Popen(
        [
            pktpath_bin(),
            "trace",
            "--dst",
            f"{dst or lab.server_ip}/32",
            "--max-pkt",
            "1",
            "--max-duration",
            "30",
            "--json",
            "--probe-mode",
            MODE,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None and proc.stderr.readline().startswith("tracing up to 1 packets")
    lab.exec(ns, *send)
    out, err = proc.communicate(timeout=60)
    packets: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines()]
    (packet,) = packets
    # The whole hop list, in the guest's log when an assertion fails.
    print("\n".join(f"{h['hop']} [{h['mode']}] {h['detail']}" for h in packet["hops"]), err)
    return packet


def udp_sender(dst: str, port: int) -> str:
    return f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x' * 64, ('{dst}', {port}))"

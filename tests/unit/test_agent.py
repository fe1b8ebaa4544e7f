"""The agent's own loop, on an in-memory kernel side: SIGHUP's reload (live filter, kept on error) and
the expiry of a deleted pod's drop counters."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from exporter.agent import Agent
from exporter.config import load_config
from exporter.k8s.pods import PodRef
from exporter.model import abi
from exporter.paths.kernel_config import PathSettings
from tests.fakes import FakeKernel


def active_config(kernel: FakeKernel) -> abi.PathConfig:
    gen = int.from_bytes(kernel.maps["path_generation"].lookup(bytes(4)) or bytes(4), "little")
    raw = kernel.maps["path_config"].lookup(gen.to_bytes(4, "little"))
    assert raw is not None
    return abi.PathConfig.from_buffer_copy(raw)


def agent_on(kernel: FakeKernel, config: Path) -> Agent:
    agent = Agent(load_config(str(config)), config_path=str(config))
    agent.kernel = cast(Any, kernel)
    agent.control = kernel.path_control()
    agent.control.apply(PathSettings.from_config(agent.cfg, enabled=True))
    return agent


def test_reload_applies_filter_and_sampling_and_keeps_them_when_the_file_is_bad(tmp_path: Path) -> None:
    config = tmp_path / "pktpath.yaml"
    config.write_text("sampling:\n  one_in: 10\n")
    kernel = FakeKernel()
    agent = agent_on(kernel, config)
    assert active_config(kernel).one_in == 10
    config.write_text("sampling:\n  one_in: 50\nfilter:\n  protocols: [udp]\n")
    agent.reload()
    cfg = active_config(kernel)
    assert (cfg.one_in, cfg.filter_flags) == (50, abi.FILTER_PROTO)
    assert agent.cfg.sampling.one_in == 50
    config.write_text("sampling:\n  one_in: -1\n")
    agent.reload()
    assert active_config(kernel).one_in == 50 and agent.cfg.sampling.one_in == 50


def test_a_gone_pods_counters_are_deleted_by_the_agent_loop(tmp_path: Path) -> None:
    config = tmp_path / "pktpath.yaml"
    config.write_text("")
    kernel = FakeKernel()
    drops = kernel.maps["drop_counts"]
    for netns in (7, 8):
        drops.set_percpu(
            bytes(abi.DropKey(ifname=b"eth0", reason=12, netns=netns)), [bytes(abi.DropValue(packets=1, bytes=60))]
        )

    class Pods:
        def expired(self, seen: set[int]) -> set[int]:
            return {7} & seen

        def pod(self, netns: int) -> PodRef | None:
            return None

    agent = agent_on(kernel, config)
    agent.pods = cast(Any, Pods())
    assert agent.expire_pod_counters() == 1
    assert [c.netns for c in kernel.drop_counters().read()] == [8]
    assert agent.expire_pod_counters() == 0


# In a fresh process: glibc's dynamic threshold is raised by freeing an 8 MB mapped buffer, then a
# 2 MB buffer is allocated, and the script prints where it landed: "[heap]" or its own mapping.
# (The agent's batches are about 170 KB. The test's buffer is larger than any hole the imports leave
# in the heap, a few hundred KB, because malloc fills such a hole whatever the threshold says.)
_WHERE_LARGE_BUFFERS_GO = """
import sys
from exporter.agent import map_large_buffers
if sys.argv[1] == "mapped":
    map_large_buffers()
first = b"x" * (8 << 20)
del first
buffer = b"y" * (2 << 20)
address = id(buffer)
for line in open("/proc/self/maps"):
    fields = line.split()
    low, high = (int(x, 16) for x in fields[0].split("-"))
    if low <= address < high:
        print(fields[5] if len(fields) > 5 else "own mapping")
"""


def test_large_buffers_get_their_own_mapping_so_freeing_them_shrinks_rss() -> None:
    import subprocess
    import sys

    def where(mode: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", _WHERE_LARGE_BUFFERS_GO, mode], capture_output=True, text=True, check=True
        )
        return proc.stdout.strip()

    # The premise: without the setting, glibc carves the buffer from the heap ...
    assert where("default") == "[heap]"
    # ... and with it, the buffer is a mapping of its own, returned to the system when freed.
    assert where("mapped") == "own mapping"

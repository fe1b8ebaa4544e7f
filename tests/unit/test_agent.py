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

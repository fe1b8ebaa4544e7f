"""What the agent writes into the kernel's path_config: the sampling thresholds and budgets."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from exporter.errors import ConfigError
from exporter.model import abi
from exporter.paths.kernel_config import PathSettings, below, build_config, iface_key, lpm_key, per_window


@pytest.mark.parametrize("one_in", [1, 2, 3, 10, 1000, 999_983, 1 << 20])
def test_below_makes_the_compare_a_one_in_n_test(one_in: int) -> None:
    # The kernel picks a uniform u32 x when x < below(N): probability below(N) / 2^32.
    p = below(one_in) / (1 << 32)
    assert abs(p - 1 / one_in) < 2**-32
    assert p <= 1 / one_in  # never more than asked for


def test_below_edges() -> None:
    assert below(0) == 0  # off: no u32 is below 0
    assert below(1) == 1 << 32  # every u32 is below 2^32: every packet


def test_per_window_scales_a_per_second_budget_to_the_kernel_window() -> None:
    window_s = (1 << abi.BUDGET_WINDOW_SHIFT) / 1e9
    assert per_window(0) == 0
    assert per_window(1000) == 1074  # 1000/s over a 1.07 s window, rounded up
    assert per_window(1) == 2
    for rate in (7, 100, 1000, 123_456):
        assert rate * window_s <= per_window(rate) < rate * window_s + 1


def test_build_config_fills_thresholds_budgets_and_filters() -> None:
    cfg = build_config(
        PathSettings(
            enabled=True,
            one_in=1000,
            drop_one_in=1,
            max_paths_per_second=1000,
            max_drop_paths_per_second=0,
            dst=(ipaddress.ip_network("10.0.0.0/8"),),
            protocols=(17,),
            ports=((53, 53),),
        )
    )
    assert (cfg.enabled, cfg.one_in, cfg.drop_one_in) == (1, 1000, 1)
    assert cfg.sample_below == (1 << 32) // 1000 and cfg.drop_sample_below == 1 << 32
    assert (cfg.max_paths, cfg.max_drop_paths) == (1074, 0)
    assert cfg.filter_flags == abi.FILTER_DST | abi.FILTER_PROTO | abi.FILTER_PORT
    assert cfg.protocols[17 >> 3] == 1 << (17 & 7)
    assert (cfg.n_port_ranges, cfg.ports[0].lo, cfg.ports[0].hi) == (1, 53, 53)


def test_build_config_refuses_too_many_port_ranges() -> None:
    ports = tuple((p, p) for p in range(abi.MAX_PORT_RANGES + 1))
    with pytest.raises(ConfigError, match=r"^filter\.ports: 17 entries, more than the 16 the kernel's path_config"):
        build_config(PathSettings(enabled=True, one_in=1, drop_one_in=0, max_paths_per_second=0, ports=ports))


def test_build_config_refuses_what_the_filter_maps_cannot_hold() -> None:
    base = PathSettings(enabled=True, one_in=1, drop_one_in=0, max_paths_per_second=0)
    nets = tuple(ipaddress.ip_network(f"10.{i >> 8}.{i & 255}.0/24") for i in range(abi.MAX_FILTER_CIDRS + 1))
    names = tuple(f"veth{i}" for i in range(abi.MAX_FILTER_IFACES + 1))
    for field, value, message in (
        ("src", nets, "filter.src: 1025 entries, more than the 1024 the kernel's filter_src"),
        ("dst", nets, "filter.dst: 1025 entries, more than the 1024 the kernel's filter_dst"),
        ("interfaces", names, "filter.interfaces: 257 entries, more than the 256"),
    ):
        with pytest.raises(ConfigError) as caught:
            build_config(dataclasses.replace(base, **{field: value}))  # type: ignore[arg-type]
        assert str(caught.value).startswith(message)
        build_config(dataclasses.replace(base, **{field: value[:-1]}))  # type: ignore[arg-type]  # exactly the capacity fits


def test_filter_keys_carry_their_generation() -> None:
    net = ipaddress.ip_network("10.1.0.0/16")
    key = abi.LpmKey.from_buffer_copy(lpm_key(net, 1))
    assert (key.prefixlen, key.generation) == (8 + 96 + 16, 1)
    assert bytes(key.addr) == bytes(10) + b"\xff\xff" + net.network_address.packed
    v6 = abi.LpmKey.from_buffer_copy(lpm_key(ipaddress.ip_network("2001:db8::/32"), 0))
    assert (v6.prefixlen, v6.generation) == (8 + 32, 0)
    assert iface_key("eth0", 1) == (1).to_bytes(4, "little") + b"eth0".ljust(16, b"\0")
    assert build_config(PathSettings(enabled=True, one_in=1, drop_one_in=0, max_paths_per_second=0), 1).generation == 1

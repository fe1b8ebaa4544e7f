"""Interface name resolution per namespace: cache, TTL, bound, and the namespace search."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from exporter.decoders.interfaces import InterfaceResolver, list_links_in


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_own_namespace_uses_the_real_link_list() -> None:
    resolver = InterfaceResolver()
    lo = socket.if_nametoindex("lo")
    assert resolver.names([(resolver.own_netns, lo)]) == {(resolver.own_netns, lo): "lo"}
    assert list_links_in(None)[lo] == "lo"


def test_hits_are_cached_until_ttl_then_refreshed() -> None:
    clock, calls = Clock(), []

    def lister(path: str | None) -> dict[int, str]:
        calls.append(path)
        return {2: f"eth{len(calls)}"}

    r = InterfaceResolver(lister=lister, ttl_seconds=10, clock=clock)
    key = (r.own_netns, 2)
    assert r.names([key])[key] == "eth1"
    clock.now += 9
    assert r.names([key])[key] == "eth1"
    assert len(calls) == 1
    clock.now += 2  # past the TTL: an ifindex may now belong to another device
    assert r.names([key])[key] == "eth2"
    assert len(calls) == 2


def test_cache_is_bounded() -> None:
    r = InterfaceResolver(lister=lambda _p: {i: f"if{i}" for i in range(1, 100)}, max_entries=10)
    r.names([(r.own_netns, i) for i in range(1, 50)])
    assert len(r._cache) == 10


def test_no_device_and_unknown_namespace() -> None:
    r = InterfaceResolver(proc_root="/nonexistent", netns_dirs=(), lister=lambda _p: {})
    assert r.names([(0, 0)]) == {(0, 0): "none"}
    assert r.names([(4026531999, 3)]) == {(4026531999, 3): "ifindex:3"}


def test_named_namespace_found_by_inode(tmp_path: Path) -> None:
    # Any file whose inode equals the drop's netns inode is "the namespace";
    # here a plain file stands in for a /run/netns bind mount.
    ns_dir = tmp_path / "netns"
    ns_dir.mkdir()
    (ns_dir / "blue").write_text("")
    inode = os.stat(ns_dir / "blue").st_ino
    seen: list[str | None] = []

    def lister(path: str | None) -> dict[int, str]:
        seen.append(path)
        return {5: "veth-blue"}

    r = InterfaceResolver(proc_root=str(tmp_path / "proc"), netns_dirs=[str(ns_dir)], lister=lister)
    assert r.names([(inode, 5)]) == {(inode, 5): "veth-blue"}
    assert seen == [str(ns_dir / "blue")]

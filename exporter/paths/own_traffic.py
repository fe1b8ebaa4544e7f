"""The agent's own connections, kept out of its own packet paths.

The agent is on the network itself: scrapers connect to its /metrics, it exports spans to an OTLP
collector, it may list pods from the Kubernetes API.  Followed like any traffic, those packets
would fill its traces with itself (with one_in 1 and no filter, its export connection alone made
about 55 traces a second).  So the kernel side never starts a path for a packet to or from one of
the endpoints written here, in the agent's own network namespace (exporter/bpf/paths.bpf.h:
own_traffic): the /metrics listener (any peer), and each address of the collector and of the API
server.  Another process of the same namespace that talks to the same collector is left out too;
packets of other namespaces (pods) never are.

Addresses are resolved when the agent starts and on each SIGHUP; a collector behind a name that
changes its addresses in between is followed until then.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.kernel.api import MapHandle
from exporter.model import abi

IPPROTO_TCP = 6


@dataclass(frozen=True)
class Endpoint:
    family: int  # 4 or 6
    address: bytes  # 16 bytes, IPv4 in the first 4; all zero: any address
    port: int


def netns_inode(proc_root: str = "/proc") -> int:
    """The network namespace this process runs in, as the kernel names it (an inode number)."""
    return os.stat(os.path.join(proc_root, "self/ns/net")).st_ino


def _packed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, bytes]:
    return ip.version, ip.packed.ljust(16, b"\0")


Resolver = Callable[..., list[tuple[Any, ...]]]


def resolve(host: str, port: int, resolver: Resolver = socket.getaddrinfo) -> list[Endpoint]:
    """Every address `host` stands for (a literal stays as it is); none when it does not resolve."""
    try:
        return [Endpoint(*_packed(ipaddress.ip_address(host)), port)]
    except ValueError:
        pass
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    found = {_packed(ipaddress.ip_address(info[4][0].split("%")[0])) for info in infos}
    return [Endpoint(family, packed, port) for family, packed in sorted(found)]


def listener(host: str, port: int) -> list[Endpoint]:
    """The /metrics listener: any address of this namespace when bound to 0.0.0.0 or ::."""
    if host in ("0.0.0.0", ""):
        return [Endpoint(4, bytes(16), port)]
    if host == "::":  # a dual-stack socket takes IPv4 too
        return [Endpoint(4, bytes(16), port), Endpoint(6, bytes(16), port)]
    return resolve(host, port)


def kubernetes_api(env: Mapping[str, str]) -> list[Endpoint]:
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not port.isdigit():
        return []
    return resolve(host, int(port))


class OwnTraffic:
    """Writes the agent's own endpoints into the kernel's own_endpoints map."""

    def __init__(self, endpoints: MapHandle, netns: int) -> None:
        self._map = endpoints
        self._netns = netns
        self.endpoints: tuple[Endpoint, ...] = ()

    def apply(self, endpoints: Iterable[Endpoint]) -> None:
        wanted = {self._key(e): e for e in endpoints}
        for key in list(self._map.keys()):
            if key not in wanted:
                self._map.delete(key)
        for key in wanted:
            self._map.update(key, b"\x01")
        self.endpoints = tuple(wanted.values())

    def _key(self, e: Endpoint) -> bytes:
        key = abi.OwnEndpoint(netns=self._netns, family=e.family, protocol=IPPROTO_TCP, port=e.port)
        ctypes.memmove(key.addr, e.address, 16)
        return bytes(key)


def endpoints_for(
    listen_host: str, metrics_port: int, collector: tuple[str, int] | None, env: Mapping[str, str], reads_pod_api: bool
) -> list[Endpoint]:
    """Where the agent's own connections end: its /metrics listener (the port it is bound to), its
    OTLP collector (host, port), and the Kubernetes API when pod labels are read from it."""
    endpoints = listener(listen_host, metrics_port)
    if collector is not None:
        endpoints += resolve(*collector)
    if reads_pod_api:
        endpoints += kubernetes_api(env)
    return endpoints

"""The agent's own endpoints: what is written to the kernel for it never to follow itself."""

from __future__ import annotations

import socket

from exporter.paths import own_traffic
from exporter.paths.own_traffic import Endpoint


def v4(addr: str) -> bytes:
    return socket.inet_aton(addr) + bytes(12)


def test_a_listener_on_every_address_is_a_wildcard() -> None:
    assert own_traffic.listener("0.0.0.0", 9977) == [Endpoint(4, bytes(16), 9977)]
    # A dual-stack socket takes IPv4 too.
    assert own_traffic.listener("::", 9977) == [Endpoint(4, bytes(16), 9977), Endpoint(6, bytes(16), 9977)]
    assert own_traffic.listener("127.0.0.1", 9977) == [Endpoint(4, v4("127.0.0.1"), 9977)]


def test_names_resolve_to_every_address_and_literals_stay() -> None:
    def resolver(host: str, port: int, **_kw: object) -> list[tuple[object, ...]]:
        assert host == "collector.example"
        return [
            (socket.AF_INET, 0, 0, "", ("10.0.0.7", port)),
            (socket.AF_INET6, 0, 0, "", ("fd00::7%eth0", port, 0, 0)),
            (socket.AF_INET, 0, 0, "", ("10.0.0.7", port)),
        ]

    got = own_traffic.resolve("collector.example", 4318, resolver)
    assert got == [Endpoint(4, v4("10.0.0.7"), 4318), Endpoint(6, socket.inet_pton(socket.AF_INET6, "fd00::7"), 4318)]
    assert own_traffic.resolve("2001:db8::1", 4317) == [
        Endpoint(6, socket.inet_pton(socket.AF_INET6, "2001:db8::1"), 4317)
    ]


def test_a_name_that_does_not_resolve_gives_nothing() -> None:
    def resolver(*_a: object, **_kw: object) -> list[tuple[object, ...]]:
        raise socket.gaierror("no such name")

    assert own_traffic.resolve("nowhere.invalid", 1, resolver) == []


def test_the_kubernetes_api_comes_from_the_service_variables() -> None:
    assert own_traffic.kubernetes_api({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}) == [
        Endpoint(4, v4("10.96.0.1"), 443)
    ]
    assert own_traffic.kubernetes_api({}) == []

"""The /metrics server: one collection serves concurrent scrapes for a short time, counters stay monotonic,
the listen queue is deep enough for a scrape storm.  Real sockets on 127.0.0.1, real prometheus_client."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from exporter.errors import KernelError
from exporter.metrics.listener import bind_listener
from exporter.metrics.server import SNAPSHOT_MAX_AGE_S, MetricsServer, Snapshot


class Reads(Collector):
    """Stands for the kernel: a counter that grows by one at each collection, which it counts."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            self.calls += 1
            value = self.calls
        family = CounterMetricFamily("pktpath_test_reads", "collections so far", labels=["map"])
        family.add_metric(["drop_counts"], value)
        yield family


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def value(families: Iterator[Metric]) -> float:
    (family,) = list(families)
    return float(family.samples[0].value)


def test_snapshot_serves_one_collection_for_max_age() -> None:
    reads, clock = Reads(), Clock()
    registry = CollectorRegistry(auto_describe=False)  # no collection at register()
    registry.register(reads)
    snap = Snapshot(registry, max_age=0.1, clock=clock)
    assert value(snap.collect()) == 1
    clock.now += 0.099
    assert value(snap.collect()) == 1  # still the same collection
    clock.now += 0.001
    assert value(snap.collect()) == 2  # 0.1 s old: collected again
    assert snap.collections == reads.calls == 2


def test_concurrent_scrapes_share_one_collection_and_never_go_back() -> None:
    reads = Reads()
    registry = CollectorRegistry(auto_describe=False)  # no collection at register()
    registry.register(reads)
    snap = Snapshot(registry, max_age=60.0)
    seen: list[float] = []
    barrier = threading.Barrier(20)

    def scrape() -> None:
        barrier.wait()
        seen.append(value(snap.collect()))

    threads = [threading.Thread(target=scrape) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [1.0] * 20 and reads.calls == 1
    # With a zero age every scrape collects, and a client's successive scrapes never see a smaller value.
    fresh = Snapshot(registry, max_age=0.0)
    values = [value(fresh.collect()) for _ in range(50)]
    assert values == sorted(values) and len(set(values)) == 50


def http_get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.fixture
def served() -> Iterator[tuple[MetricsServer, Reads]]:
    reads = Reads()
    registry = CollectorRegistry(auto_describe=True)
    registry.register(reads)
    server = MetricsServer(bind_listener("127.0.0.1", 0, "127.0.0.1:0"), registry, ready=lambda: True)
    server.start()
    try:
        yield server, reads
    finally:
        server.stop()


def test_storm_of_scrapes_is_answered_from_few_collections(served: tuple[MetricsServer, Reads]) -> None:
    server, reads = served
    before = reads.calls  # the serving registry collected once to learn the names
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def scrape() -> None:
        got = http_get(server.port, "/metrics")
        with lock:
            results.append(got)

    threads = [threading.Thread(target=scrape) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [status for status, _ in results] == [200] * 40
    # 40 scrapes within a few tenths of a second: a handful of collections, not 40.
    assert reads.calls - before < 40 * SNAPSHOT_MAX_AGE_S * 10
    for _status, body in results:
        (family,) = [f for f in text_string_to_metric_families(body) if f.name == "pktpath_test_reads"]
        assert family.samples[0].labels == {"map": "drop_counts"}


def test_name_filter_still_works(served: tuple[MetricsServer, Reads]) -> None:
    server, _reads = served
    status, body = http_get(server.port, "/metrics?name[]=pktpath_test_reads_total")
    assert status == 200 and "pktpath_test_reads_total{" in body
    status, body = http_get(server.port, "/metrics?name[]=something_else")
    assert status == 200 and "pktpath_test_reads" not in body


def test_listen_queue_holds_a_storm() -> None:
    # The socketserver default of 5 overflowed under 20 scrapers (SYN retries: p99 1.07 s).
    sock = bind_listener("127.0.0.1", 0, "127.0.0.1:0")
    try:
        # Connections the kernel completes before anything accepts them all wait in the queue.
        clients = []
        for _ in range(40):
            c = http.client.HTTPConnection("127.0.0.1", sock.getsockname()[1], timeout=1)
            c.connect()
            clients.append(c)
        for c in clients:
            c.close()
    finally:
        sock.close()


def test_bind_error_names_the_key_and_address() -> None:
    held = bind_listener("127.0.0.1", 0, "127.0.0.1:0")
    try:
        port = held.getsockname()[1]
        with pytest.raises(KernelError) as caught:
            bind_listener("127.0.0.1", port, f"127.0.0.1:{port}")
        assert str(caught.value) == f"metrics.listen: cannot listen on 127.0.0.1:{port}: Address already in use"
        assert caught.value.exit_status == 1
    finally:
        held.close()


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    return resp.status, body


def test_routes() -> None:
    ready = [False]
    server = MetricsServer(bind_listener("127.0.0.1", 0, "127.0.0.1:0"), CollectorRegistry(), ready=lambda: ready[0])
    server.start()
    try:
        assert get(server.port, "/healthz") == (200, "ok\n")
        assert get(server.port, "/readyz") == (503, "not ready: no probe attached\n")
        ready[0] = True
        assert get(server.port, "/readyz") == (200, "ready\n")
        status, body = get(server.port, "/metrics")
        assert status == 200 and "python_info" not in body  # our registry only: nothing global leaks in
        assert get(server.port, "/nope")[0] == 404
        assert get(server.port, "/")[0] == 200
    finally:
        server.stop()

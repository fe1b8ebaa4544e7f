"""Tests for exporter.traces.export: exporter selection, and real OTLP export to in-process receivers."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from exporter.config.model import TracesConfig
from exporter.errors import ConfigError
from exporter.model.path import Hop, HopEvent, Outcome, PacketHeader, Path
from exporter.traces.export import DROP_REASONS, Tracing, build_tracing, http_traces_url
from exporter.traces.ids import packet_trace_id, trace_id_hex
from tests.otlp_receiver import BlackHole, OtlpReceiver, ReceivedSpan

HEADER = PacketHeader(
    family=4, src="10.0.1.5", dst="10.0.2.9", protocol=17, sport=4242, dport=53, ttl=64, length=84, ip_id=1
)
SPANS_PER_PATH = 4  # a root and three hops
FAST = TracesConfig(exporter="otlp", schedule_delay_ms=10, export_timeout_ms=3000)


def path(n: int = 0, dropped: bool = False) -> Path:
    """A path of three hops, a distinct packet per ``n`` (its IP id)."""
    header = replace(HEADER, ip_id=n & 0xFFFF, sport=4242 + (n >> 16))
    now = time.monotonic_ns()
    last = (
        HopEvent(n, Hop.DROP, now + 2_000, ifname="eth0", reason="NETFILTER_DROP")
        if dropped
        else (HopEvent(n, Hop.DEV_XMIT, now + 2_000, ifname="eth1"))
    )
    hops = [
        HopEvent(n, Hop.NETIF_RECEIVE, now, ifname="eth0", header=header),
        HopEvent(n, Hop.FIB_LOOKUP, now + 1_000, table=254, out_ifname="eth1"),
        last,
    ]
    if dropped:
        return Path(n, header, hops, Outcome.DROPPED, drop_reason="NETFILTER_DROP")
    return Path(n, header, hops, Outcome.TRANSMITTED)


@pytest.fixture(autouse=True)
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK reads the process environment itself: a developer's OTEL_* must not leak into the tests.
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def start() -> Iterator[Callable[..., Tracing]]:
    """build_tracing() that must not return None, shut down at the end of the test."""
    started: list[Tracing] = []

    def build(cfg: TracesConfig, env: dict[str, str] | None = None) -> Tracing:
        tracing = build_tracing(cfg, {} if env is None else env)
        assert tracing is not None
        started.append(tracing)
        return tracing

    yield build
    for tracing in started:
        tracing.shutdown(1.0)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as rx:
        yield rx


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def accounted(tracing: Tracing) -> bool:
    return tracing.exported + sum(tracing.dropped.values()) == tracing.ended


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.name: s for s in spans}


# --- real export -----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_export_with_endpoint_from_config(protocol: str, receiver: OtlpReceiver, start: Callable[..., Tracing]) -> None:
    endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
    tracing = start(replace(FAST, protocol=protocol, endpoint=endpoint, service_name="node-a"))
    assert tracing.exporter_name == f"otlp/{protocol}"
    forwarded, dropped = path(1), path(2, dropped=True)
    trace_ids = [tracing.span_builder.emit(forwarded), tracing.span_builder.emit(dropped)]
    spans = receiver.wait_for(2 * SPANS_PER_PATH)
    assert {s.protocol for s in spans} == {"grpc" if protocol == "grpc" else "http"}

    roots = {s.trace_id: s for s in spans if not s.parent_span_id}
    assert set(roots) == set(trace_ids)
    wall_start = roots[trace_ids[0]].start_ns
    assert trace_ids[0] == f"{packet_trace_id(forwarded.header or HEADER, wall_start):032x}"

    root = roots[trace_ids[1]]
    assert root.name == "UDP 10.0.1.5:4242 -> 10.0.2.9:53"
    assert root.status_code == "ERROR" and root.status_message == "NETFILTER_DROP"
    assert root.attributes["source.address"] == "10.0.1.5"
    assert root.attributes["destination.port"] == 53
    assert root.attributes["network.transport"] == "udp"
    assert root.attributes["pktpath.outcome"] == "dropped"
    assert root.attributes["pktpath.hop_count"] == 3
    assert root.resource["service.name"] == "node-a"
    assert root.resource["host.name"] == socket.gethostname()
    assert root.scope == "pktpath"
    # The second packet of the flow links to the first.
    assert [(link.trace_id, link.attributes) for link in root.links] == [
        (trace_ids[0], {"pktpath.link": "previous packet of flow"})
    ]

    children = by_name([s for s in spans if s.trace_id == trace_ids[1] and s.parent_span_id])
    assert set(children) == {
        "netif_receive_skb(eth0)",
        "fib lookup (table main, found -> eth1)",
        "DROPPED: NETFILTER_DROP",
    }
    assert all(c.parent_span_id == root.span_id for c in children.values())
    drop = children["DROPPED: NETFILTER_DROP"]
    assert drop.status_code == "ERROR" and drop.attributes["pktpath.drop_reason"] == "NETFILTER_DROP"
    assert children["fib lookup (table main, found -> eth1)"].attributes["pktpath.fib.oif"] == "eth1"
    assert root.start_ns <= min(c.start_ns for c in children.values())

    tracing.shutdown(5.0)
    assert tracing.exported == 2 * SPANS_PER_PATH
    assert tracing.dropped == dict.fromkeys(DROP_REASONS, 0)


def test_http_endpoint_and_service_name_from_env(
    receiver: OtlpReceiver, start: Callable[..., Tracing], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint)  # the SDK appends /v1/traces
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,service.name=ignored")
    tracing = start(TracesConfig(schedule_delay_ms=10, export_timeout_ms=3000), dict(os.environ))
    assert tracing.exporter_name == "otlp/http/protobuf"  # the specification's default protocol
    assert tracing.endpoint is None
    tracing.span_builder.emit(path(1))
    spans = receiver.wait_for(SPANS_PER_PATH)
    assert spans[0].resource["service.name"] == "from-env"
    assert spans[0].resource["deployment.environment"] == "test"
    assert "gzip" in receiver.encodings
    assert receiver.requests["grpc"] == 0


def test_grpc_endpoint_and_protocol_from_env(
    receiver: OtlpReceiver, start: Callable[..., Tracing], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")  # the per-signal variable wins
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.grpc_endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    tracing = start(TracesConfig(schedule_delay_ms=10, export_timeout_ms=3000), dict(os.environ))
    assert tracing.exporter_name == "otlp/grpc"
    tracing.span_builder.emit(path(1))
    spans = receiver.wait_for(SPANS_PER_PATH)
    assert spans[0].resource["service.name"] == "pktpath"  # the default
    assert receiver.requests["http"] == 0


def test_config_endpoint_beats_env(
    receiver: OtlpReceiver, start: Callable[..., Tracing], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{closed_port()}/v1/traces")
    tracing = start(replace(FAST, endpoint=receiver.http_endpoint + "/v1/traces"), dict(os.environ))
    tracing.span_builder.emit(path(1))
    receiver.wait_for(SPANS_PER_PATH)
    tracing.shutdown(5.0)
    assert tracing.exported == SPANS_PER_PATH


# --- losses are counted ----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_dead_endpoint_counts_export_failed(protocol: str, start: Callable[..., Tracing]) -> None:
    cfg = replace(FAST, protocol=protocol, endpoint=f"http://127.0.0.1:{closed_port()}", export_timeout_ms=300)
    tracing = start(cfg)
    for n in range(5):
        tracing.span_builder.emit(path(n))
    wait_until(lambda: tracing.dropped["export_failed"] == 5 * SPANS_PER_PATH)
    assert tracing.exported == 0
    assert tracing.ended == 5 * SPANS_PER_PATH
    assert tracing.pending == 0


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_refusing_receiver_counts_export_failed(protocol: str, start: Callable[..., Tracing]) -> None:
    with OtlpReceiver(mode="error") as rx:
        endpoint = rx.grpc_endpoint if protocol == "grpc" else rx.http_endpoint
        tracing = start(replace(FAST, protocol=protocol, endpoint=endpoint, export_timeout_ms=300))
        tracing.span_builder.emit(path(1))
        wait_until(lambda: tracing.dropped["export_failed"] == SPANS_PER_PATH)
        assert rx.requests["grpc" if protocol == "grpc" else "http"] >= 1
        assert rx.spans == []
        assert tracing.exported == 0


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_emit_stays_fast_with_a_dead_endpoint(protocol: str, start: Callable[..., Tracing]) -> None:
    cfg = replace(FAST, protocol=protocol, endpoint=f"http://127.0.0.1:{closed_port()}", export_timeout_ms=200)
    tracing = start(cfg)
    began = time.monotonic()
    for n in range(1000):
        tracing.span_builder.emit(path(n))
    assert time.monotonic() - began < 2.0
    assert tracing.pending <= cfg.max_queue_size  # memory stays bounded
    tracing.shutdown(5.0)
    assert tracing.ended == 1000 * SPANS_PER_PATH
    assert tracing.exported == 0
    assert tracing.dropped["export_failed"] > 0
    assert accounted(tracing)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_full_queue_drops_and_counts(protocol: str, start: Callable[..., Tracing]) -> None:
    with OtlpReceiver(mode="hang") as rx:
        endpoint = rx.grpc_endpoint if protocol == "grpc" else rx.http_endpoint
        cfg = replace(FAST, protocol=protocol, endpoint=endpoint, max_queue_size=4, max_export_batch_size=2)
        tracing = start(cfg)
        began = time.monotonic()
        # Every path keeps its trace id (its exemplar), whether its spans fit or not.
        ids = [tracing.span_builder.emit(path(n)) for n in range(25)]
        assert time.monotonic() - began < 2.0  # never waits for the hanging receiver
        assert ids == [trace_id_hex(path(n)) for n in range(25)]
        assert tracing.pending <= 4
        assert tracing.dropped["queue_full"] > 0
        rx.release()
        tracing.shutdown(5.0)
        assert tracing.ended == 25 * SPANS_PER_PATH
        assert tracing.exported + tracing.dropped["queue_full"] == tracing.ended
        assert tracing.dropped["export_failed"] == tracing.dropped["shutdown"] == 0
        assert len(rx.wait_for(tracing.exported)) == tracing.exported


def test_shutdown_is_bounded_when_the_receiver_hangs(start: Callable[..., Tracing]) -> None:
    with OtlpReceiver(mode="hang", http_enabled=False) as rx:
        tracing = start(
            replace(
                FAST,
                protocol="grpc",
                endpoint=rx.grpc_endpoint,
                max_queue_size=8,
                max_export_batch_size=2,
                export_timeout_ms=60000,
            )
        )
        for n in range(4):
            tracing.span_builder.emit(path(n))
        wait_until(lambda: rx.requests["grpc"] >= 1)  # one batch is stuck in the receiver
        began = time.monotonic()
        tracing.shutdown(0.3)
        assert time.monotonic() - began < 3.0
        assert tracing.dropped["shutdown"] > 0
        wait_until(lambda: accounted(tracing))  # the stuck batch ends as export_failed
        assert tracing.exported == 0
        # Spans ending after shutdown are counted too.
        ended = tracing.ended
        tracing.span_builder.emit(path(9))
        assert tracing.ended == ended + SPANS_PER_PATH
        assert accounted(tracing)
        tracing.shutdown(0.3)  # idempotent


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_shutdown_is_bounded_with_a_black_holed_endpoint(protocol: str, start: Callable[..., Tracing]) -> None:
    """A collector that accepts and never answers: shutdown() returns in its time, every span accounted."""
    with BlackHole() as hole:
        tracing = start(
            replace(FAST, protocol=protocol, endpoint=hole.endpoint, max_export_batch_size=4, export_timeout_ms=60000)
        )
        for n in range(10):
            tracing.span_builder.emit(path(n))
        wait_until(lambda: hole.connections >= 1 and tracing.pending < 10 * SPANS_PER_PATH)  # one batch in export
        began = time.monotonic()
        tracing.shutdown(1.0)
        took = time.monotonic() - began
        assert 0.4 < took < 1.2  # it waited for the flush, then cancelled, within the time given
        assert tracing.exported == 0
        assert tracing.pending == 0
        assert tracing.dropped["shutdown"] > 0  # the batches that never left
        if protocol == "grpc":  # closing the channel ends the call in export: counted at once
            wait_until(lambda: accounted(tracing), timeout=2.0)
            assert tracing.dropped["export_failed"] == SPANS_PER_PATH
        # (An HTTP request blocked on the silent peer is counted export_failed when its timeout ends it.)


def test_a_path_is_queued_whole_or_not_at_all(start: Callable[..., Tracing]) -> None:
    with OtlpReceiver(mode="hang") as rx:
        # Room for 10 spans: two 4-span paths fit, the third does not, although 2 spans are free.
        tracing = start(
            replace(
                FAST,
                protocol="grpc",
                endpoint=rx.grpc_endpoint,
                max_queue_size=10,
                max_export_batch_size=10,
                schedule_delay_ms=60000,
            )
        )
        for n in range(3):
            tracing.span_builder.emit(path(n))
        assert (tracing.pending, tracing.dropped["queue_full"]) == (8, 4)
        rx.release()
        tracing.shutdown(5.0)
        assert tracing.exported == 8
        assert len({s.trace_id for s in rx.wait_for(8)}) == 2  # two whole traces, no partial third


def test_batches_hold_at_most_max_export_batch_size_spans(
    receiver: OtlpReceiver, start: Callable[..., Tracing]
) -> None:
    tracing = start(
        replace(
            FAST, protocol="grpc", endpoint=receiver.grpc_endpoint, max_export_batch_size=10, schedule_delay_ms=60000
        )
    )
    for n in range(7):  # 28 spans: 5 full-sized batches' worth of whole paths would need 10 per batch
        tracing.span_builder.emit(path(n))
    tracing.shutdown(5.0)
    assert tracing.exported == 28
    receiver.wait_for(28)
    assert receiver.batch_sizes == [8, 8, 8, 4]  # whole paths, never more than 10 spans


def test_schedule_delay_sends_a_partial_batch(receiver: OtlpReceiver, start: Callable[..., Tracing]) -> None:
    tracing = start(replace(FAST, protocol="grpc", endpoint=receiver.grpc_endpoint, schedule_delay_ms=200))
    began = time.monotonic()
    tracing.span_builder.emit(path(1))
    receiver.wait_for(SPANS_PER_PATH, timeout=5.0)
    assert 0.15 < time.monotonic() - began < 2.0
    assert receiver.batch_sizes == [SPANS_PER_PATH]


@pytest.mark.parametrize(
    ("sampler", "arg", "kept"),
    [
        ("always_off", None, 0),
        ("parentbased_always_off", None, 0),
        ("traceidratio", "0.5", None),
        ("always_on", None, 40),
    ],
)
def test_otel_traces_sampler(
    sampler: str,
    arg: str | None,
    kept: int | None,
    receiver: OtlpReceiver,
    start: Callable[..., Tracing],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    if arg is not None:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    tracing = start(replace(FAST, protocol="grpc", endpoint=receiver.grpc_endpoint), dict(os.environ))
    ids = [tracing.span_builder.emit(path(n)) for n in range(40)]
    tracing.shutdown(5.0)
    sent = [i for i in ids if i]
    if kept is None:  # the ratio sampler keeps a trace when the id's low 64 bits are below rate * 2**64
        kept = len(sent)
        assert 5 < kept < 35  # 40 packets at 1/2: outside only with probability ~1e-6
        assert all(int(i, 16) & (2**64 - 1) < 2**63 for i in sent)
    assert len(sent) == kept
    assert tracing.exported == tracing.ended == kept * SPANS_PER_PATH
    assert {s.trace_id for s in receiver.wait_for(tracing.exported)} == set(sent)


# --- choosing the exporter -------------------------------------------------------------------


def test_console_exporter(start: Callable[..., Tracing], capfd: pytest.CaptureFixture[str]) -> None:
    tracing = start(TracesConfig(exporter="console", schedule_delay_ms=10))
    assert tracing.exporter_name == "console"
    tracing.span_builder.emit(path(1))
    tracing.shutdown(5.0)
    assert tracing.exported == SPANS_PER_PATH
    assert '"name": "UDP 10.0.1.5:4242 -> 10.0.2.9:53"' in capfd.readouterr().out


def test_console_from_env(start: Callable[..., Tracing]) -> None:
    assert start(TracesConfig(), {"OTEL_TRACES_EXPORTER": "console"}).exporter_name == "console"


@pytest.mark.parametrize(
    ("cfg", "env"),
    [
        (TracesConfig(), {}),  # nothing asked for: off (the SDK would default to otlp)
        (TracesConfig(), {"OTEL_TRACES_EXPORTER": "none"}),
        (TracesConfig(), {"OTEL_TRACES_EXPORTER": ""}),  # empty = unset
        (TracesConfig(), {"OTEL_TRACES_EXPORTER": " , "}),
        (TracesConfig(exporter="none"), {"OTEL_TRACES_EXPORTER": "otlp"}),  # the config wins
        (TracesConfig(exporter="otlp"), {"OTEL_SDK_DISABLED": "true"}),
        (TracesConfig(endpoint="http://collector:4318"), {"OTEL_TRACES_EXPORTER": "none"}),
    ],
)
def test_none(cfg: TracesConfig, env: dict[str, str]) -> None:
    assert build_tracing(cfg, env) is None


@pytest.mark.parametrize(
    ("cfg", "env"),
    [
        (TracesConfig(endpoint="http://127.0.0.1:4318"), {}),
        (TracesConfig(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}),
        (TracesConfig(), {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}),
    ],
)
def test_an_endpoint_alone_exports_over_otlp(
    start: Callable[..., Tracing], cfg: TracesConfig, env: dict[str, str]
) -> None:
    """Paths are on by default and export nothing until an endpoint is set; setting one is enough."""
    assert start(cfg, env).exporter_name == "otlp/http/protobuf"


def test_env_precedence(start: Callable[..., Tracing]) -> None:
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_SERVICE_NAME": "e"}
    tracing = start(TracesConfig(exporter="otlp", protocol="grpc", service_name="cfg"), env)
    assert tracing.exporter_name == "otlp/grpc"
    assert tracing.resource["service.name"] == "cfg"
    tracing = start(TracesConfig(), env | {"OTEL_TRACES_EXPORTER": "otlp"})
    assert tracing.exporter_name == "otlp/http/protobuf"
    assert tracing.resource["service.name"] == "e"
    tracing = start(TracesConfig(exporter="otlp"), {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert tracing.exporter_name == "otlp/grpc"


def test_resource_attributes_from_env(start: Callable[..., Tracing], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,host.name=node-7,k8s.node.name=node-7")
    attributes = start(TracesConfig(exporter="console"), dict(os.environ)).resource
    assert attributes["service.name"] == "from-attrs"  # no OTEL_SERVICE_NAME, no service_name key
    assert attributes["host.name"] == "node-7"  # overrides pktpath's default
    assert attributes["k8s.node.name"] == "node-7"
    assert attributes["service.version"]
    monkeypatch.setenv("OTEL_SERVICE_NAME", "wins")
    attributes = start(TracesConfig(exporter="console"), dict(os.environ)).resource
    assert attributes["service.name"] == "wins"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            'OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" is not a supported OTLP protocol (use grpc or http/protobuf)',
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "GRPC"},
            'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "GRPC" is not a supported OTLP protocol (use grpc or http/protobuf)',
        ),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, 'OTEL_TRACES_EXPORTER: "zipkin" is not one of otlp, console, none'),
        (
            {"OTEL_TRACES_EXPORTER": "otlp,console"},
            'OTEL_TRACES_EXPORTER: "otlp,console": pktpath sends traces to one exporter (one of otlp, console, none)',
        ),
    ],
)
def test_bad_env_is_a_config_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_tracing(TracesConfig(), env)
    assert str(caught.value) == message


def test_bad_sdk_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli")
    with pytest.raises(ConfigError) as caught:
        build_tracing(TracesConfig(exporter="otlp", protocol="grpc"), {})
    assert str(caught.value).startswith("traces: cannot set up the OTLP gRPC exporter:")
    assert "OTEL_EXPORTER_OTLP_COMPRESSION" in str(caught.value)


def test_batch_larger_than_queue_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        build_tracing(TracesConfig(exporter="console", max_queue_size=10, max_export_batch_size=11), {})
    assert str(caught.value) == (
        "traces.max_export_batch_size: 11 is out of range 1..10 (it cannot exceed traces.max_queue_size)"
    )


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://c:4318", "http://c:4318/v1/traces"),
        ("http://c:4318/", "http://c:4318/v1/traces"),
        ("http://c:4318/v1/traces", "http://c:4318/v1/traces"),
        ("http://c:4318/v1/traces/", "http://c:4318/v1/traces"),
        ("https://gw.example/otlp", "https://gw.example/otlp/v1/traces"),
        ("https://gw.example/otlp?tenant=a", "https://gw.example/otlp/v1/traces?tenant=a"),
    ],
)
def test_http_traces_url(endpoint: str, url: str) -> None:
    assert http_traces_url(endpoint) == url


def test_a_transport_that_raises_costs_its_batch_only(caplog: pytest.LogCaptureFixture) -> None:
    """A bug in a transport: the batch is counted failed, the traceback logged once, the thread goes on."""
    from exporter.traces.encode import RequestFraming
    from exporter.traces.export import SpanQueue

    class Broken:
        calls = 0

        def send(self, request: bytes, spans: int) -> bool:
            self.calls += 1
            if self.calls <= 2:
                raise RuntimeError("transport bug")
            return True

        def cancel(self) -> None:
            pass

    queue = SpanQueue(Broken(), RequestFraming({}, "pktpath", ""), max_queue_size=100, max_batch=2, delay_s=0.01)
    with caplog.at_level("DEBUG", logger="exporter.traces.export"):
        for _ in range(3):
            queue.offer(b"", 2)
            wait_until(lambda: queue.snapshot()[1] == 0)
        queue.shutdown(2.0)
    assert (queue.exported, queue.dropped["export_failed"]) == (2, 4)
    assert [r.levelname for r in caplog.records if r.message == "traces: span export failed"] == ["ERROR", "DEBUG"]
    assert sum(1 for r in caplog.records if r.exc_info) == 1

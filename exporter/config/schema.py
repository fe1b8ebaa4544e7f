"""The configuration schema: one table describing every key (``SECTIONS``).

The table is the single source of truth for which keys exist, what YAML type each accepts, how its
value is checked, and what it means; each key's default is its dataclass field's
(exporter/config/model.py), and its checks are in exporter/config/values.py.  The loader walks the
table, not the dataclasses, so adding a section is: a dataclass, a ``Section`` entry, a ``Config``
field.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.config import values
from exporter.config.model import (
    Config,
    DropsConfig,
    FilterConfig,
    KubernetesConfig,
    LoggingConfig,
    MetricsConfig,
    ProbesConfig,
    SamplingConfig,
    TracesConfig,
)
from exporter.model import abi

# --- the table -------------------------------------------------------------------------------


class Kind(enum.Enum):
    """A YAML scalar type a key (or each item of a list key) accepts; the value is the message noun."""

    STRING = "a string"
    INTEGER = "an integer"
    BOOLEAN = "a boolean"


@dataclass(frozen=True)
class Key:
    name: str
    kinds: tuple[Kind, ...]
    doc: str
    # A YAML list whose items each have one of ``kinds``; stored as a tuple.
    many: bool = False
    # Takes a value already of one of ``kinds``; returns the stored form or raises BadValueError.
    check: Callable[[Any], object] | None = None
    # What to call the accepted types in a message, when "a string or an integer" would be vague.
    expected: str = ""
    # Most items of a list key, and the kernel map whose capacity sets it: checked before the items,
    # so `validate` refuses what `run` could not load (the numbers come from pktpath.h via abi.py).
    max_items: int | None = None
    capacity_of: str = ""
    # The built-in value, already in its checked form: the section's dataclass field default (written
    # there once; Section fills it in).
    default: object = None

    def expected_text(self) -> str:
        return self.expected or " or ".join(kind.value for kind in self.kinds)


@dataclass(frozen=True)
class Section:
    name: str
    doc: str
    result: type[Any]  # the section's dataclass: its field defaults are the keys' defaults
    keys: tuple[Key, ...]
    # Turns {key name: checked value} (every key present) into the section's dataclass.
    build: Callable[[Mapping[str, Any]], object]

    def __post_init__(self) -> None:
        fields = {f.name: f for f in dataclasses.fields(self.result)}
        keys = []
        for key in self.keys:
            f = fields.get(key.name)
            if f is None:
                raise RuntimeError(f"config key {self.name}.{key.name} has no field in {self.result.__name__}")
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
            keys.append(dataclasses.replace(key, default=default))
        object.__setattr__(self, "keys", tuple(keys))

    def key(self, name: str) -> Key | None:
        return next((key for key in self.keys if key.name == name), None)


def _builder(cls: type[Any]) -> Callable[[Mapping[str, Any]], object]:
    def build(values: Mapping[str, Any]) -> object:
        return cls(**values)

    return build


_STR = (Kind.STRING,)
_INT = (Kind.INTEGER,)
_BOOL = (Kind.BOOLEAN,)

SECTIONS: tuple[Section, ...] = (
    Section(
        "metrics",
        "The Prometheus /metrics endpoint.",
        MetricsConfig,
        (
            Key(
                "listen",
                _STR,
                'Address to serve /metrics on, "host:port". IPv6 in brackets ("[::1]:9977"); '
                "host may be a name; port 0 picks a free port.",
                check=values.check_listen,
            ),
        ),
        values.build_metrics,
    ),
    Section(
        "drops",
        "Counting packet drops by reason.",
        DropsConfig,
        (
            Key("enabled", _BOOL, "Count drops at all."),
            Key(
                "max_series",
                _INT,
                "Size of the kernel map of drop counters (16..1048576); bounds the number of metric series.",
                check=values.IntRange(16, 1048576),
            ),
        ),
        _builder(DropsConfig),
    ),
    Section(
        "probes",
        "How pktpath attaches to the kernel.",
        ProbesConfig,
        (
            Key(
                "mode",
                _STR,
                "Attach mechanism: auto (best available), fentry, kprobe or tracepoint.",
                check=values.OneOf(values.PROBE_MODES),
            ),
            Key("exclude", _STR, "Hop names not to attach to.", many=True, check=values.check_hop),
            Key("strict", _BOOL, "Fail start-up when any probe cannot attach, instead of skipping it."),
        ),
        _builder(ProbesConfig),
    ),
    Section(
        "filter",
        "Which packets the path tracer follows (drop counters always count everything). Empty list = any.",
        FilterConfig,
        (
            Key(
                "src",
                _STR,
                f"Source CIDRs (IPv4 or IPv6); a bare address means /32 or /128. At most {abi.MAX_FILTER_CIDRS}.",
                many=True,
                check=values.check_network,
                max_items=abi.MAX_FILTER_CIDRS,
                capacity_of="the kernel's filter_src map",
            ),
            Key(
                "dst",
                _STR,
                f"Destination CIDRs, as for src. At most {abi.MAX_FILTER_CIDRS}.",
                many=True,
                check=values.check_network,
                max_items=abi.MAX_FILTER_CIDRS,
                capacity_of="the kernel's filter_dst map",
            ),
            Key(
                "protocols",
                (Kind.STRING, Kind.INTEGER),
                f"IP protocols: names ({', '.join(values.PROTOCOLS)}; any case) or numbers 0..255.",
                many=True,
                check=values.check_protocol,
                expected="a protocol name or number",
            ),
            Key(
                "ports",
                (Kind.INTEGER, Kind.STRING),
                'Ports: a number 1..65535 or a "LOW-HIGH" range string; stored as (low, high). At most '
                f"{abi.MAX_PORT_RANGES} entries.",
                many=True,
                check=values.check_port,
                expected='a port number or a "LOW-HIGH" range',
                max_items=abi.MAX_PORT_RANGES,
                capacity_of="the kernel's path_config.ports",
            ),
            Key(
                "interfaces",
                _STR,
                f"Interface names (1..{values.IFNAME_MAX} bytes, no '/', ':' or whitespace). At most "
                f"{abi.MAX_FILTER_IFACES}.",
                many=True,
                check=values.check_interface,
                max_items=abi.MAX_FILTER_IFACES,
                capacity_of="the kernel's filter_ifaces map",
            ),
        ),
        _builder(FilterConfig),
    ),
    Section(
        "sampling",
        "Which packets are followed hop by hop, and how many. The first hop decides, in the kernel.",
        SamplingConfig,
        (
            Key(
                "continuous",
                _BOOL,
                "Keep the path hooks attached all the time and sample 1 in one_in "
                "(for debugging: every packet then pays the hooks' dispatch). false: sampling windows.",
            ),
            Key(
                "window_period_seconds",
                _INT,
                "A sampling window opens at every multiple of this many "
                "seconds of the wall clock (2..3600), so agents on different nodes open theirs together.",
                check=values.IntRange(2, 3600),
            ),
            Key(
                "window_seconds",
                _INT,
                "How long each window samples (1..3599, shorter than the period). "
                "The path hooks are attached only around it; a path in flight at its end is followed to its "
                "end.",
                check=values.IntRange(1, 3599),
            ),
            Key(
                "adaptive",
                _BOOL,
                "Inside windows, raise N above one_in so that a window's paths fill its "
                "budget (max_paths_per_second x window_seconds) and no more; false: always 1 in one_in.",
            ),
            Key(
                "one_in",
                _INT,
                "Follow 1 in N matching packets (1 = every one, 0 = none); decided by a "
                "hash of the packet's identity, so every hop and every node agrees. With adaptive windows, "
                "the smallest N used.",
                check=values.IntRange(0, values.MAX_ONE_IN),
            ),
            Key(
                "drop_one_in",
                _INT,
                "Also keep 1 in N dropped packets nobody was following, as a one-hop "
                "path (0 = off). Costs nothing for packets that are not dropped.",
                check=values.IntRange(0, values.MAX_ONE_IN),
            ),
            Key(
                "max_paths_per_second",
                _INT,
                "Budget of new sampled paths per second for the whole "
                "host, enforced in the kernel (0 = unlimited). Keeps the agent's CPU bounded whatever the "
                "traffic.",
                check=values.IntRange(0, 10_000_000),
            ),
            Key(
                "max_drop_paths_per_second",
                _INT,
                "Budget of new drop-captured paths per second for "
                "the whole host, separate from the one above so that neither a drop storm nor heavy sampled "
                "traffic starves the other (0 = unlimited).",
                check=values.IntRange(0, 10_000_000),
            ),
            Key(
                "max_tracked",
                _INT,
                "Packets followed at once (size of the kernel's map of tracked packets, "
                "64..1048576); a packet refused because it is full counts in pktpath_tracking_lost_total.",
                check=values.IntRange(64, 1048576),
            ),
            Key(
                "ring_buffer_kb",
                _INT,
                "Size of the kernel-to-agent event ring, KiB (power of two, "
                "4..262144). A full ring loses events, counted in pktpath_events_lost_total.",
                check=values.check_ring_kb,
            ),
        ),
        values.build_sampling,
    ),
    Section(
        "kubernetes",
        "Pod names for drops and spans, on Kubernetes nodes (the agent runs with hostPID).",
        KubernetesConfig,
        (
            Key(
                "pod_labels",
                _BOOL,
                "Add namespace and pod labels to pktpath_drops_total and "
                "pktpath_drop_bytes_total, and k8s.* attributes to spans.",
            ),
            Key(
                "node_name",
                _STR,
                "This node's name, for the API server's pod list; null = the "
                "NODE_NAME environment variable (set it from the downward API).",
            ),
            Key(
                "pods_file",
                _STR,
                'JSON file listing this node\'s pods ({"pods": [{"uid", "namespace", '
                '"name"}]}) instead of asking the API server; null = the in-cluster API.',
            ),
            Key(
                "refresh_seconds",
                _INT,
                "How often the pod list and the namespace map are refreshed (1..3600).",
                check=values.IntRange(1, 3600),
            ),
            Key(
                "max_pods",
                _INT,
                'Most pods given their own label value (1..100000); beyond it pod="other" (a cardinality guard).',
                check=values.IntRange(1, 100000),
            ),
            Key(
                "expire_seconds",
                _INT,
                "How long a deleted pod's series stay after it is gone "
                "(0..86400); then its namespace's counters are removed.",
                check=values.IntRange(0, 86400),
            ),
        ),
        _builder(KubernetesConfig),
    ),
    Section(
        "logging",
        "pktpath's own log output (stderr).",
        LoggingConfig,
        (
            Key(
                "level",
                _STR,
                "Least severe level logged: debug, info, warn or error.",
                check=values.OneOf(values.LOG_LEVELS),
            ),
            Key("format", _STR, "text (human) or json (one object per line).", check=values.OneOf(values.LOG_FORMATS)),
        ),
        _builder(LoggingConfig),
    ),
    Section(
        "traces",
        "Packet paths as OpenTelemetry traces. Unset (null) keys follow the standard OTEL_* environment variables.",
        TracesConfig,
        (
            Key(
                "exporter",
                _STR,
                "otlp, console or none; null = OTEL_TRACES_EXPORTER (otlp, console, none), else none.",
                check=values.OneOf(values.TRACE_EXPORTERS),
            ),
            Key(
                "endpoint",
                _STR,
                "OTLP endpoint URL (http:// or https://); null = OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "
                "then OTEL_EXPORTER_OTLP_ENDPOINT, else the SDK default (localhost:4317 / :4318).",
                check=values.check_endpoint,
            ),
            Key(
                "protocol",
                _STR,
                "grpc or http/protobuf; null = OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then "
                "OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf.",
                check=values.OneOf(values.OTLP_PROTOCOLS),
            ),
            Key(
                "service_name",
                _STR,
                'Resource service.name; null = OTEL_SERVICE_NAME, else "pktpath".',
                check=values.check_service_name,
            ),
            Key(
                "max_queue_size",
                _INT,
                f"Spans held for export (1..{values.MAX_TRACE_QUEUE}); beyond it spans are dropped and counted.",
                check=values.IntRange(1, values.MAX_TRACE_QUEUE),
            ),
            Key(
                "max_export_batch_size",
                _INT,
                "Most spans per export request (1..max_queue_size).",
                check=values.IntRange(1, values.MAX_TRACE_QUEUE),
            ),
            Key(
                "schedule_delay_ms",
                _INT,
                "Longest wait, in ms, before queued spans are exported (1..60000).",
                check=values.IntRange(1, 60000),
            ),
            Key(
                "export_timeout_ms",
                _INT,
                "Time limit, in ms, of one export request, retries included (1..600000).",
                check=values.IntRange(1, 600000),
            ),
        ),
        values.build_traces,
    ),
)


def section(name: str) -> Section | None:
    return next((sec for sec in SECTIONS if sec.name == name), None)


def _assert_table_matches_config() -> None:
    # Fail at import, not at a user's first config file, when a section is added to one place only.
    table = [sec.name for sec in SECTIONS]
    fields = [f.name for f in dataclasses.fields(Config)]
    if table != fields:
        raise RuntimeError(f"config schema sections {table} do not match Config fields {fields}")


_assert_table_matches_config()

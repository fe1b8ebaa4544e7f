"""The configuration schema: the typed result (frozen dataclasses) and one table describing every key.

The table (``SECTIONS``) is the single source of truth for which keys exist, what YAML type each
accepts, its default, how its value is checked, and what it means. The loader walks the table, not
the dataclasses, so adding a section is: a dataclass, a ``Section`` entry, a ``Config`` field.

Check functions here know nothing about files or line numbers: they raise ``BadValueError`` with a short
one-line reason, and the loader prefixes ``<source>:<line>: <key.path>:``.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.decoders import abi
from exporter.errors import ConfigError

DEFAULT_LISTEN = "0.0.0.0:9977"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BadValueError(ValueError):
    """A value is wrong; the message is one line and carries no location."""


# --- the result ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = DEFAULT_LISTEN
    # Derived from ``listen`` so consumers never re-parse it (and never mis-parse "[::1]:9977").
    host: str = "0.0.0.0"
    port: int = 9977


@dataclass(frozen=True)
class DropsConfig:
    enabled: bool = True
    max_series: int = 4096


@dataclass(frozen=True)
class ProbesConfig:
    mode: str = "auto"
    exclude: tuple[str, ...] = ()
    strict: bool = False


@dataclass(frozen=True)
class FilterConfig:
    src: tuple[IPNetwork, ...] = ()
    dst: tuple[IPNetwork, ...] = ()
    protocols: tuple[int, ...] = ()
    ports: tuple[tuple[int, int], ...] = ()
    interfaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class SamplingConfig:
    one_in: int = 1000
    drop_one_in: int = 1
    max_paths_per_second: int = 1000
    max_drop_paths_per_second: int = 100
    max_tracked: int = 8192
    ring_buffer_kb: int = 1024


@dataclass(frozen=True)
class KubernetesConfig:
    pod_labels: bool = False
    node_name: str | None = None
    pods_file: str | None = None
    refresh_seconds: int = 10
    max_pods: int = 2000
    expire_seconds: int = 300


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "text"


@dataclass(frozen=True)
class TracesConfig:
    # None = decided at start-up from the OTEL_* environment variables (see exporter/traces/export.py).
    exporter: str | None = None
    endpoint: str | None = None
    protocol: str | None = None
    service_name: str | None = None
    max_queue_size: int = 2048
    max_export_batch_size: int = 512
    schedule_delay_ms: int = 1000
    export_timeout_ms: int = 10000


@dataclass(frozen=True)
class Config:
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    drops: DropsConfig = field(default_factory=DropsConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    traces: TracesConfig = field(default_factory=TracesConfig)


# --- helpers shared by the checks and the loader ---------------------------------------------


def quote(text: str, limit: int = 60) -> str:
    """Quote a user's string for a message; JSON escaping keeps control characters off the line."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return json.dumps(text)


def suggest(word: str, choices: Sequence[str]) -> str:
    """'; did you mean 'x'?' when one choice is close, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# The checks with a fixed shape are small classes, not closures, so that the JSON Schema of the Helm
# chart's config (exporter/config/jsonschema.py) can read their bounds instead of repeating them.


@dataclass(frozen=True)
class OneOf:
    choices: tuple[str, ...]

    def __call__(self, value: Any) -> object:
        if value not in self.choices:
            raise BadValueError(f"{quote(value)} is not one of {', '.join(self.choices)}"
                                f"{suggest(value, self.choices)}")
        return value


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int

    def __call__(self, value: Any) -> object:
        if not self.low <= value <= self.high:
            raise BadValueError(f"{value} is out of range {self.low}..{self.high}")
        return value


@dataclass(frozen=True)
class PowerOfTwo:
    low: int
    high: int

    def __call__(self, value: Any) -> object:
        if not self.low <= value <= self.high or value & (value - 1):
            raise BadValueError(f"{value} is not a power of two in {self.low}..{self.high}")
        return value

    def values(self) -> list[int]:
        return [1 << n for n in range(self.low.bit_length() - 1, self.high.bit_length()) if
                self.low <= 1 << n <= self.high]


_one_of = OneOf
_int_range = IntRange


# --- metrics.listen --------------------------------------------------------------------------

_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_DIGITS = re.compile(r"[0-9]+")
MAX_PORT = 65535


def _to_int(digits: str) -> int:
    """int() of a digit string, capped: Python refuses very long ones, and any of those is out of range anyway."""
    return int(digits) if len(digits) <= 9 else 10**9
_LISTEN_EXAMPLE = '(e.g. "0.0.0.0:9977" or "[::1]:9977")'


def _parse_port(text: str, whole: str, low: int) -> int:
    if not text:
        raise BadValueError(f"missing port in {quote(whole)}")
    if not _DIGITS.fullmatch(text):
        raise BadValueError(f"port {quote(text)} in {quote(whole)} is not a number")
    port = _to_int(text)
    if not low <= port <= MAX_PORT:
        raise BadValueError(f"port {text} in {quote(whole)} is out of range {low}..{MAX_PORT}")
    return port


def _check_hostname(host: str, whole: str) -> None:
    labels = host.split(".")
    if all(label.isdigit() for label in labels):
        # "300.1.1.1" or "10.1" look like host names to the label rule but are surely typos of an address.
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise BadValueError(f"{quote(host)} in {quote(whole)} is not a valid IPv4 address") from None
        return
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise BadValueError(f"{quote(host)} in {quote(whole)} is not a valid host name or IP address")


def split_listen(value: str) -> tuple[str, int]:
    """Split "host:port" / "[v6]:port" into (host, port); host comes back without brackets."""
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            raise BadValueError(f"missing ']' in {quote(value)}")
        host, rest = value[1:close], value[close + 1 :]
        if not rest:
            raise BadValueError(f"missing port in {quote(value)}")
        if not rest.startswith(":"):
            raise BadValueError(f"expected ':' after ']' in {quote(value)}")
        port = _parse_port(rest[1:], value, 0)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise BadValueError(f"{quote(host)} in {quote(value)} is not an IPv6 address") from None
        return host, port
    host, sep, port_text = value.rpartition(":")
    if not sep:
        raise BadValueError(f"{quote(value)} is not host:port {_LISTEN_EXAMPLE}")
    port = _parse_port(port_text, value, 0)
    if not host:
        raise BadValueError(f"missing host in {quote(value)} (use \"0.0.0.0:{port_text}\" for all interfaces)")
    if ":" in host:
        raise BadValueError(f"an IPv6 address needs brackets: write \"[{host}]:{port_text}\" instead of {quote(value)}")
    _check_hostname(host, value)
    return host, port


def _check_listen(value: Any) -> object:
    split_listen(value)
    return value


def _build_metrics(values: Mapping[str, Any]) -> MetricsConfig:
    host, port = split_listen(values["listen"])
    return MetricsConfig(listen=values["listen"], host=host, port=port)


# --- probes ----------------------------------------------------------------------------------

PROBE_MODES = ("auto", "fentry", "kprobe", "tracepoint")
_HOP_NAME = re.compile(r"[a-z][a-z0-9_]*")
_HOP_RULE = "lower-case letters, digits and '_', starting with a letter"


def _check_hop(value: Any) -> object:
    if not _HOP_NAME.fullmatch(value):
        raise BadValueError(f"{quote(value)} is not a hop name ({_HOP_RULE})")
    return value


# --- filter ----------------------------------------------------------------------------------

# IANA protocol numbers; fixed forever, so a table beats asking /etc/protocols (absent in containers).
PROTOCOLS: dict[str, int] = {
    "icmp": 1,
    "igmp": 2,
    "tcp": 6,
    "udp": 17,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmpv6": 58,
    "sctp": 132,
}

_PORT_RANGE = re.compile(r"([0-9]+)-([0-9]+)")
# The kernel's dev_valid_name(): IFNAMSIZ is 16 including the NUL.
IFNAME_MAX = 15


def _check_network(value: Any) -> object:
    text: str = value
    addr_text, slash, prefix_text = text.partition("/")
    try:
        addr = ipaddress.ip_address(addr_text)
    except ValueError:
        raise BadValueError(f"{quote(text)} is not an IPv4 or IPv6 address or network") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None:
        raise BadValueError(f"{quote(text)}: a zone index ('%...') is not allowed in a filter address")
    if not slash:
        return ipaddress.ip_network(addr)
    if not _DIGITS.fullmatch(prefix_text):
        raise BadValueError(f"{quote(text)}: prefix length {quote(prefix_text)} is not a number")
    prefix = _to_int(prefix_text)
    if prefix > addr.max_prefixlen:
        raise BadValueError(f"{quote(text)}: prefix length {prefix_text} is out of range 0..{addr.max_prefixlen}")
    network = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
    if network.network_address != addr:
        # Silently masking would hide a typo in which network the user meant.
        raise BadValueError(f"{text} has host bits set; did you mean {network}?")
    return network


def _check_protocol(value: Any) -> object:
    if isinstance(value, int):
        if not 0 <= value <= 255:
            raise BadValueError(f"protocol number {value} is out of range 0..255")
        return value
    number = PROTOCOLS.get(value.lower())
    if number is None:
        known = ", ".join(PROTOCOLS)
        hint = suggest(value.lower(), list(PROTOCOLS))
        raise BadValueError(f"unknown protocol {quote(value)} (known: {known}, or a number 0..255){hint}")
    return number


def _check_port(value: Any) -> object:
    if isinstance(value, int):
        if not 1 <= value <= MAX_PORT:
            raise BadValueError(f"port {value} is out of range 1..{MAX_PORT}")
        return (value, value)
    match = _PORT_RANGE.fullmatch(value)
    if match is None:
        raise BadValueError(f'{quote(value)} is not a port range (expected "LOW-HIGH", e.g. "8000-8080")')
    low_text, high_text = match.groups()
    low, high = _to_int(low_text), _to_int(high_text)
    for end_text, end in ((low_text, low), (high_text, high)):
        if not 1 <= end <= MAX_PORT:
            raise BadValueError(f"port {end_text} in {quote(value)} is out of range 1..{MAX_PORT}")
    if low > high:
        raise BadValueError(f"port range {quote(value)} is reversed: {low} is above {high}")
    return (low, high)


def _check_interface(value: Any) -> object:
    name: str = value
    if not name:
        raise BadValueError("interface name is empty")
    if len(name.encode()) > IFNAME_MAX:
        raise BadValueError(f"interface name {quote(name)} is longer than {IFNAME_MAX} bytes")
    if name in (".", ".."):
        raise BadValueError(f"{quote(name)} is not a valid interface name")
    for bad, what in (("/", "'/'"), (":", "':'"), ("\0", "a NUL byte")):
        if bad in name:
            raise BadValueError(f"interface name {quote(name)} contains {what}")
    if any(ch.isspace() for ch in name):
        raise BadValueError(f"interface name {quote(name)} contains whitespace")
    return name


# --- sampling --------------------------------------------------------------------------------

MAX_ONE_IN = 2**31 - 1


# The kernel wants a ring buffer of a power-of-two number of pages.
_check_ring_kb = PowerOfTwo(4, 262144)


# --- logging ---------------------------------------------------------------------------------

LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("text", "json")


# --- traces ----------------------------------------------------------------------------------

TRACE_EXPORTERS = ("otlp", "console", "none")
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
MAX_TRACE_QUEUE = 1_000_000
_ENDPOINT_EXAMPLE = '(e.g. "http://localhost:4318")'


def _check_endpoint(value: Any) -> object:
    text: str = value
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        # Only an unbalanced IPv6 bracket ("http://[::1") gets this far.
        raise BadValueError(f"{quote(text)} is not a valid URL {_ENDPOINT_EXAMPLE}") from None
    if parts.scheme not in ("http", "https"):
        raise BadValueError(f"{quote(text)} is not an http:// or https:// URL {_ENDPOINT_EXAMPLE}")
    if any(ch.isspace() for ch in text):
        raise BadValueError(f"URL {quote(text)} contains whitespace")
    if not parts.hostname:
        raise BadValueError(f"missing host in {quote(text)}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        raise BadValueError(f"port in {quote(text)} is not a number 1..{MAX_PORT}")
    return text


def _check_service_name(value: Any) -> object:
    if not value.strip():
        raise BadValueError("service name is empty")
    return value


def _build_traces(values: Mapping[str, Any]) -> TracesConfig:
    traces = TracesConfig(**values)
    if traces.max_export_batch_size > traces.max_queue_size:
        # The one check that needs two keys. The loader only places BadValueError from a key's own check,
        # so this is a ConfigError naming both keys, without a file line.
        raise ConfigError(
            f"traces.max_export_batch_size: {traces.max_export_batch_size} is out of range "
            f"1..{traces.max_queue_size} (it cannot exceed traces.max_queue_size)"
        )
    return traces


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
    # Already in its checked form (what ``check`` would return), so it can go straight into the dataclass.
    default: object
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

    def expected_text(self) -> str:
        return self.expected or " or ".join(kind.value for kind in self.kinds)


@dataclass(frozen=True)
class Section:
    name: str
    doc: str
    keys: tuple[Key, ...]
    # Turns {key name: checked value} (every key present) into the section's dataclass.
    build: Callable[[Mapping[str, Any]], object]

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
        (
            Key(
                "listen",
                _STR,
                DEFAULT_LISTEN,
                'Address to serve /metrics on, "host:port". IPv6 in brackets ("[::1]:9977"); '
                "host may be a name; port 0 picks a free port.",
                check=_check_listen,
            ),
        ),
        _build_metrics,
    ),
    Section(
        "drops",
        "Counting packet drops by reason.",
        (
            Key("enabled", _BOOL, True, "Count drops at all."),
            Key(
                "max_series",
                _INT,
                4096,
                "Size of the kernel map of drop counters (16..1048576); bounds the number of metric series.",
                check=_int_range(16, 1048576),
            ),
        ),
        _builder(DropsConfig),
    ),
    Section(
        "probes",
        "How pktpath attaches to the kernel.",
        (
            Key(
                "mode",
                _STR,
                "auto",
                "Attach mechanism: auto (best available), fentry, kprobe or tracepoint.",
                check=_one_of(PROBE_MODES),
            ),
            Key("exclude", _STR, (), "Hop names not to attach to.", many=True, check=_check_hop),
            Key("strict", _BOOL, False, "Fail start-up when any probe cannot attach, instead of skipping it."),
        ),
        _builder(ProbesConfig),
    ),
    Section(
        "filter",
        "Which packets the path tracer follows (drop counters always count everything). Empty list = any.",
        (
            Key("src", _STR, (), "Source CIDRs (IPv4 or IPv6); a bare address means /32 or /128. At most "
                f"{abi.MAX_FILTER_CIDRS}.", many=True, check=_check_network, max_items=abi.MAX_FILTER_CIDRS,
                capacity_of="the kernel's filter_src map"),
            Key("dst", _STR, (), f"Destination CIDRs, as for src. At most {abi.MAX_FILTER_CIDRS}.", many=True,
                check=_check_network, max_items=abi.MAX_FILTER_CIDRS, capacity_of="the kernel's filter_dst map"),
            Key(
                "protocols",
                (Kind.STRING, Kind.INTEGER),
                (),
                f"IP protocols: names ({', '.join(PROTOCOLS)}; any case) or numbers 0..255.",
                many=True,
                check=_check_protocol,
                expected="a protocol name or number",
            ),
            Key(
                "ports",
                (Kind.INTEGER, Kind.STRING),
                (),
                'Ports: a number 1..65535 or a "LOW-HIGH" range string; stored as (low, high). At most '
                f"{abi.MAX_PORT_RANGES} entries.",
                many=True,
                check=_check_port,
                expected='a port number or a "LOW-HIGH" range',
                max_items=abi.MAX_PORT_RANGES,
                capacity_of="the kernel's path_config.ports",
            ),
            Key(
                "interfaces",
                _STR,
                (),
                f"Interface names (1..{IFNAME_MAX} bytes, no '/', ':' or whitespace). At most "
                f"{abi.MAX_FILTER_IFACES}.",
                many=True,
                check=_check_interface,
                max_items=abi.MAX_FILTER_IFACES,
                capacity_of="the kernel's filter_ifaces map",
            ),
        ),
        _builder(FilterConfig),
    ),
    Section(
        "sampling",
        "Which packets are followed hop by hop, and how many. The first hop decides, in the kernel.",
        (
            Key("one_in", _INT, 1000, "Follow 1 in N matching packets (1 = every one, 0 = none); decided by a "
                "hash of the packet's identity, so every hop and every node agrees.",
                check=_int_range(0, MAX_ONE_IN)),
            Key("drop_one_in", _INT, 1, "Also keep 1 in N dropped packets nobody was following, as a one-hop "
                "path (0 = off). Costs nothing for packets that are not dropped.",
                check=_int_range(0, MAX_ONE_IN)),
            Key("max_paths_per_second", _INT, 1000, "Budget of new sampled paths per second for the whole "
                "host, enforced in the kernel (0 = unlimited). Keeps the agent's CPU bounded whatever the "
                "traffic.", check=_int_range(0, 10_000_000)),
            Key("max_drop_paths_per_second", _INT, 100, "Budget of new drop-captured paths per second for "
                "the whole host, separate from the one above so that neither a drop storm nor heavy sampled "
                "traffic starves the other (0 = unlimited).", check=_int_range(0, 10_000_000)),
            Key("max_tracked", _INT, 8192, "Packets followed at once (size of the kernel's map of tracked packets, "
                "64..1048576); a packet refused because it is full counts in pktpath_tracking_lost_total.",
                check=_int_range(64, 1048576)),
            Key("ring_buffer_kb", _INT, 1024, "Size of the kernel-to-agent event ring, KiB (power of two, "
                "4..262144). A full ring loses events, counted in pktpath_events_lost_total.",
                check=_check_ring_kb),
        ),
        _builder(SamplingConfig),
    ),
    Section(
        "kubernetes",
        "Pod names for drops and spans, on Kubernetes nodes (the agent runs with hostPID).",
        (
            Key("pod_labels", _BOOL, False, "Add namespace and pod labels to pktpath_drops_total and "
                "pktpath_drop_bytes_total, and k8s.* attributes to spans."),
            Key("node_name", _STR, None, "This node's name, for the API server's pod list; null = the "
                "NODE_NAME environment variable (set it from the downward API)."),
            Key("pods_file", _STR, None, 'JSON file listing this node\'s pods ({"pods": [{"uid", "namespace", '
                '"name"}]}) instead of asking the API server; null = the in-cluster API.'),
            Key("refresh_seconds", _INT, 10, "How often the pod list and the namespace map are refreshed "
                "(1..3600).", check=_int_range(1, 3600)),
            Key("max_pods", _INT, 2000, "Most pods given their own label value (1..100000); beyond it "
                'pod="other" (a cardinality guard).', check=_int_range(1, 100000)),
            Key("expire_seconds", _INT, 300, "How long a deleted pod's series stay after it is gone "
                "(0..86400); then its namespace's counters are removed.", check=_int_range(0, 86400)),
        ),
        _builder(KubernetesConfig),
    ),
    Section(
        "logging",
        "pktpath's own log output (stderr).",
        (
            Key("level", _STR, "info", "Least severe level logged: debug, info, warn or error.",
                check=_one_of(LOG_LEVELS)),
            Key("format", _STR, "text", "text (human) or json (one object per line).", check=_one_of(LOG_FORMATS)),
        ),
        _builder(LoggingConfig),
    ),
    Section(
        "traces",
        "Packet paths as OpenTelemetry traces. Unset (null) keys follow the standard OTEL_* environment variables.",
        (
            Key(
                "exporter",
                _STR,
                None,
                "otlp, console or none; null = OTEL_TRACES_EXPORTER (otlp, console, none), else none.",
                check=_one_of(TRACE_EXPORTERS),
            ),
            Key(
                "endpoint",
                _STR,
                None,
                "OTLP endpoint URL (http:// or https://); null = OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "
                "then OTEL_EXPORTER_OTLP_ENDPOINT, else the SDK default (localhost:4317 / :4318).",
                check=_check_endpoint,
            ),
            Key(
                "protocol",
                _STR,
                None,
                "grpc or http/protobuf; null = OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then "
                "OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf.",
                check=_one_of(OTLP_PROTOCOLS),
            ),
            Key(
                "service_name",
                _STR,
                None,
                'Resource service.name; null = OTEL_SERVICE_NAME, else "pktpath".',
                check=_check_service_name,
            ),
            Key(
                "max_queue_size",
                _INT,
                2048,
                f"Spans held for export (1..{MAX_TRACE_QUEUE}); beyond it spans are dropped and counted.",
                check=_int_range(1, MAX_TRACE_QUEUE),
            ),
            Key(
                "max_export_batch_size",
                _INT,
                512,
                "Most spans per export request (1..max_queue_size).",
                check=_int_range(1, MAX_TRACE_QUEUE),
            ),
            Key(
                "schedule_delay_ms",
                _INT,
                1000,
                "Longest wait, in ms, before queued spans are exported (1..60000).",
                check=_int_range(1, 60000),
            ),
            Key(
                "export_timeout_ms",
                _INT,
                10000,
                "Time limit, in ms, of one export request, retries included (1..600000).",
                check=_int_range(1, 600000),
            ),
        ),
        _build_traces,
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

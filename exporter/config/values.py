"""Checks and parsers of config values: each takes a value already of the right YAML type and returns
its stored form, or raises BadValueError with a one-line reason that names no file or line (the
loader adds ``<source>:<line>: <key.path>:``).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.config.model import MetricsConfig, SamplingConfig, TracesConfig
from exporter.errors import ConfigError
from exporter.model import vocabulary


class BadValueError(ValueError):
    """A value is wrong; the message is one line and carries no location."""


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
            raise BadValueError(f"{quote(value)} is not one of {', '.join(self.choices)}{suggest(value, self.choices)}")
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
        return [
            1 << n for n in range(self.low.bit_length() - 1, self.high.bit_length()) if self.low <= 1 << n <= self.high
        ]


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
        raise BadValueError(f'missing host in {quote(value)} (use "0.0.0.0:{port_text}" for all interfaces)')
    if ":" in host:
        raise BadValueError(f'an IPv6 address needs brackets: write "[{host}]:{port_text}" instead of {quote(value)}')
    _check_hostname(host, value)
    return host, port


def check_listen(value: Any) -> object:
    split_listen(value)
    return value


def build_metrics(values: Mapping[str, Any]) -> MetricsConfig:
    host, port = split_listen(values["listen"])
    return MetricsConfig(listen=values["listen"], host=host, port=port)


# --- probes ----------------------------------------------------------------------------------

PROBE_MODES = ("auto", "fentry", "kprobe", "tracepoint")
_HOP_NAME = re.compile(r"[a-z][a-z0-9_]*")
_HOP_RULE = "lower-case letters, digits and '_', starting with a letter"


def check_hop(value: Any) -> object:
    if not _HOP_NAME.fullmatch(value):
        raise BadValueError(f"{quote(value)} is not a hop name ({_HOP_RULE})")
    return value


# --- filter ----------------------------------------------------------------------------------

# The protocols filter.protocols takes by name (exporter/model/vocabulary.py).
PROTOCOLS: dict[str, int] = {
    name: number for number, name in vocabulary.IP_PROTOCOLS.items() if name in vocabulary.FILTER_PROTOCOLS
}

_PORT_RANGE = re.compile(r"([0-9]+)-([0-9]+)")
# The kernel's dev_valid_name(): IFNAMSIZ is 16 including the NUL.
IFNAME_MAX = 15


def check_network(value: Any) -> object:
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


def check_protocol(value: Any) -> object:
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


def check_port(value: Any) -> object:
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


def check_interface(value: Any) -> object:
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
check_ring_kb = PowerOfTwo(4, 262144)


# --- logging ---------------------------------------------------------------------------------

LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("text", "json")


# --- traces ----------------------------------------------------------------------------------

TRACE_EXPORTERS = ("otlp", "console", "none")
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
MAX_TRACE_QUEUE = 1_000_000
_ENDPOINT_EXAMPLE = '(e.g. "http://localhost:4318")'


def check_endpoint(value: Any) -> object:
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


def check_service_name(value: Any) -> object:
    if not value.strip():
        raise BadValueError("service name is empty")
    return value


def build_sampling(values: Mapping[str, Any]) -> SamplingConfig:
    sampling = SamplingConfig(**values)
    if not sampling.window_seconds < sampling.window_period_seconds:
        # Like build_traces: two keys, so a ConfigError naming both, without a file line.
        raise ConfigError(
            f"sampling.window_seconds: {sampling.window_seconds} is out of range "
            f"1..{sampling.window_period_seconds - 1} (a window must be shorter than "
            f"sampling.window_period_seconds; for hooks attached all the time set sampling.continuous: true)"
        )
    return sampling


def build_traces(values: Mapping[str, Any]) -> TracesConfig:
    traces = TracesConfig(**values)
    if traces.max_export_batch_size > traces.max_queue_size:
        # The one check that needs two keys. The loader only places BadValueError from a key's own check,
        # so this is a ConfigError naming both keys, without a file line.
        raise ConfigError(
            f"traces.max_export_batch_size: {traces.max_export_batch_size} is out of range "
            f"1..{traces.max_queue_size} (it cannot exceed traces.max_queue_size)"
        )
    return traces

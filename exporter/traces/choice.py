"""Which trace exporter and protocol the config and the OTEL_* variables ask for.

Kept apart from export.py so the agent can decide whether packet paths are on
(and so whether to attach the path hops) without importing the OpenTelemetry
SDK first: that import costs ~60 ms, which would sit between start and the
first attached probe.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

from exporter.config.model import TracesConfig
from exporter.config.values import OTLP_PROTOCOLS, TRACE_EXPORTERS, quote
from exporter.errors import ConfigError

DEFAULT_PROTOCOL = "http/protobuf"  # the OTel specification's default
OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
OTEL_TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
OTEL_EXPORTER_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"


def env_value(env: Mapping[str, str], name: str) -> str | None:
    # The specification: an empty value means unset.
    value = env.get(name, "").strip()
    return value or None


def exporter_choice(cfg: TracesConfig, env: Mapping[str, str]) -> str:
    """`traces.exporter`, else OTEL_TRACES_EXPORTER, else "otlp" when an endpoint is given (the
    config's or an OTEL_EXPORTER_OTLP_*ENDPOINT variable), else "none".  Paths are followed either
    way; with "none" their spans go nowhere (docs/traces.md: "With no endpoint")."""
    if cfg.exporter is not None:
        return cfg.exporter
    value = env_value(env, OTEL_TRACES_EXPORTER)
    if value is None:
        endpoint = (
            cfg.endpoint
            or env_value(env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
            or env_value(env, OTEL_EXPORTER_OTLP_ENDPOINT)
        )
        return "otlp" if endpoint else "none"
    names = [name.strip().lower() for name in value.split(",") if name.strip()]
    choices = ", ".join(TRACE_EXPORTERS)
    if not names:
        return "none"
    if len(set(names)) > 1:
        raise ConfigError(
            f"{OTEL_TRACES_EXPORTER}: {quote(value)}: pktpath sends traces to one exporter (one of {choices})"
        )
    if names[0] not in TRACE_EXPORTERS:
        raise ConfigError(f"{OTEL_TRACES_EXPORTER}: {quote(value)} is not one of {choices}")
    return names[0]


def protocol_choice(cfg: TracesConfig, env: Mapping[str, str]) -> str:
    if cfg.protocol is not None:
        return cfg.protocol
    for name in (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL):
        value = env_value(env, name)
        if value is not None:
            if value not in OTLP_PROTOCOLS:
                supported = " or ".join(OTLP_PROTOCOLS)
                raise ConfigError(f"{name}: {quote(value)} is not a supported OTLP protocol (use {supported})")
            return value
    return DEFAULT_PROTOCOL


def traces_enabled(cfg: TracesConfig, env: Mapping[str, str]) -> bool:
    """True when build_tracing() would return a Tracing (raises the same ConfigErrors)."""
    if (env_value(env, OTEL_SDK_DISABLED) or "").lower() == "true":
        return False
    kind = exporter_choice(cfg, env)
    if kind == "otlp":
        protocol_choice(cfg, env)  # a bad protocol is an error now, before anything is loaded
    return kind != "none"


OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
# The OTel specification's defaults, which the OTLP exporters apply when nothing is set.
DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}


def endpoint_address(cfg: TracesConfig, env: Mapping[str, str]) -> tuple[str, int] | None:
    """(host, port) the OTLP exporter connects to, as the config, the OTEL_* variables and the
    specification's defaults decide; None when traces are off or go to the console.  Used to keep
    the agent's own export connection out of its own packet paths."""
    if traces_enabled(cfg, env) is False or exporter_choice(cfg, env) != "otlp":
        return None
    url = (
        cfg.endpoint
        or env_value(env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
        or env_value(env, OTEL_EXPORTER_OTLP_ENDPOINT)
        or DEFAULT_ENDPOINTS[protocol_choice(cfg, env)]
    )
    if "://" not in url:
        url = "http://" + url  # gRPC endpoints may be given as host:port
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)

"""The configuration as the agent uses it: one frozen dataclass per section, every key's built-in
value written here, once (exporter/config/schema.py's table reads its defaults from these fields).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

DEFAULT_LISTEN = "0.0.0.0:9977"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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

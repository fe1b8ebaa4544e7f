"""pktpath's configuration: a YAML file whose every key has a built-in default.

Use ``load_config(path)`` (None = no file) or ``parse_config(text)``; both return a frozen ``Config``
or raise ``exporter.errors.ConfigError`` with a one-line ``<source>:<line>: <key.path>: <reason>``.
"""

from __future__ import annotations

from exporter.config.loader import load_config, parse_config
from exporter.config.model import (
    DEFAULT_LISTEN,
    Config,
    DropsConfig,
    FilterConfig,
    IPNetwork,
    KubernetesConfig,
    LoggingConfig,
    MetricsConfig,
    ProbesConfig,
    SamplingConfig,
)
from exporter.config.schema import SECTIONS, Key, Kind, Section

__all__ = [
    "DEFAULT_LISTEN",
    "SECTIONS",
    "Config",
    "DropsConfig",
    "FilterConfig",
    "IPNetwork",
    "Key",
    "Kind",
    "KubernetesConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ProbesConfig",
    "SamplingConfig",
    "Section",
    "load_config",
    "parse_config",
]

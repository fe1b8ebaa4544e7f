"""pktpath's configuration: a YAML file whose every key has a built-in default.

Use ``load_config(path)`` (None = no file) or ``parse_config(text)``; both return a frozen ``Config``
or raise ``exporter.errors.ConfigError`` with a one-line ``<source>:<line>: <key.path>: <reason>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from exporter.config.schema import SECTIONS, Key, Kind, Section

# The schema (every key's type, default and check) is for parsing a file, validating and the docs:
# imported on first use, so an agent with no config file reaches its first probe without it.
_SCHEMA_NAMES = frozenset({"SECTIONS", "Key", "Kind", "Section"})


def __getattr__(name: str) -> object:
    if name in _SCHEMA_NAMES:
        from exporter.config import schema

        return getattr(schema, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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

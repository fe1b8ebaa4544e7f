"""Read a config file into ``Config``; None means no file, i.e. every default.

A size limit comes before the YAML library sees a file, because its failures there are not errors
a user can read: ``/dev/zero`` ran out of memory, a 10 MB file took 52 s and 600 MB to compose.

The YAML parser (exporter/config/parse.py) is imported only when there is a file: an agent started
with its built-in defaults never pays PyYAML's ~20 ms import before its first probe is attached.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from exporter.config.model import Config
from exporter.errors import ConfigError

# The largest config file read. The biggest useful config (1,024 CIDRs each for filter.src and
# filter.dst, 256 interfaces, 16 ports) is about 100 KB; at 1 MiB composing takes about 1 s of CPU.
MAX_CONFIG_BYTES = 1 << 20
_NEWLINES = re.compile(r"\r\n?")


def load_config(path: str | None, env: Mapping[str, str] | None = None) -> Config:
    """Read the config file at ``path``; None means no file, i.e. every default."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as handle:
            # One byte past the limit tells "too large" from "exactly the limit" without reading on:
            # /dev/zero or a huge file stop here.
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(one_line(f"{path}: cannot read config: {exc.strerror or exc}")) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            one_line(
                f"{path}: cannot read config: larger than {MAX_CONFIG_BYTES} bytes (1 MiB), the limit for a config file"
            )
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read config: not UTF-8 text (bad byte at offset {exc.start})") from exc
    # What text mode's universal newlines did: the line numbers of reader errors count only "\n".
    return parse_config(_NEWLINES.sub("\n", text), source=path, env=env)


def parse_config(text: str, source: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    """Parse YAML ``text``; ``source`` names it in messages. Raises ConfigError on the first problem."""
    from exporter.config import parse

    return parse.parse_config(text, source, env)


def one_line(message: str) -> str:
    """The CLI prints exactly one line per error; a stray newline from a path or a library would break that."""
    return " ".join(message.split())

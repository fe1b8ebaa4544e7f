"""Config files that are too large or too deeply nested fail in one line, fast, through the real CLI.

Before these limits, 1 KB of nested '[' ended in a RecursionError traceback, /dev/zero in a
MemoryError, and a 10 MB file took 52 s and 600 MB before it was accepted.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from exporter.config import parse_config
from exporter.config.loader import MAX_CONFIG_BYTES, load_config
from exporter.config.parse import MAX_NESTING
from exporter.errors import ConfigError
from tests.agent_process import pktpath_bin

# A failing run of the old code took 52 s on the 10 MB file: long enough to tell, short enough to wait.
KILL_AFTER_S = 20.0


def run_measured(*args: str) -> tuple[int, str, str, float]:
    """(exit status, stdout, stderr, CPU seconds of the process: user + system, from wait4).

    CPU, not wall time: the machine is shared, and a busy neighbour stretches wall time only."""
    proc = subprocess.Popen([pktpath_bin(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + KILL_AFTER_S
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode, out, err, usage.ru_utime + usage.ru_stime


def assert_one_line(status: int, err: str, expected_status: int, text: str) -> None:
    assert status == expected_status, err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err and "Error:" not in err.split(": ", 1)[0]
    assert text in err, err


@pytest.mark.parametrize("command", ["validate", "run"])
def test_nested_brackets_are_one_line_exit_2(tmp_path: Path, command: str) -> None:
    nested = tmp_path / "nested.yaml"
    nested.write_text("[" * 1024 + "\n")
    args = ("validate", str(nested)) if command == "validate" else ("run", "-c", str(nested))
    status, _out, err, _cpu = run_measured(*args)
    assert_one_line(status, err, 2, f"pktpath: {nested}:1:{MAX_NESTING + 1}: nested deeper than {MAX_NESTING} levels")


def test_nested_mappings_inside_a_real_key(tmp_path: Path) -> None:
    nested = tmp_path / "nested.yaml"
    nested.write_text("filter:\n  src: " + "{a: " * 40 + "1" + "}" * 40 + "\n")
    status, _out, err, _cpu = run_measured("validate", str(nested))
    assert_one_line(status, err, 2, f"{nested}:2:")
    assert f"nested deeper than {MAX_NESTING} levels" in err


def test_dev_zero_is_too_large_and_fails_fast() -> None:
    status, _out, err, cpu = run_measured("validate", "/dev/zero")
    assert_one_line(status, err, 2, f"pktpath: /dev/zero: cannot read config: larger than {MAX_CONFIG_BYTES} bytes")
    assert cpu < 0.6, f"{cpu:.2f} s of CPU"


def test_ten_megabyte_file_fails_fast(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    # Valid YAML the old loader accepted after composing all of it: a comment line repeated.
    line = "# " + "x" * 98 + "\n"
    big.write_text("drops:\n  enabled: true\n" + line * 100_000)
    assert big.stat().st_size > 10_000_000
    status, _out, err, cpu = run_measured("validate", str(big))
    assert_one_line(status, err, 2, f"pktpath: {big}: cannot read config: larger than {MAX_CONFIG_BYTES} bytes")
    # Python's own start-up and imports are about 0.1 s of it.
    assert cpu < 0.6, f"{cpu:.2f} s of CPU"


def test_a_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "limit.yaml"
    head = "drops:\n  enabled: false\n"
    path.write_text(head + "#" * (MAX_CONFIG_BYTES - len(head) - 1) + "\n")
    assert path.stat().st_size == MAX_CONFIG_BYTES
    assert load_config(str(path)).drops.enabled is False
    with path.open("a") as handle:
        handle.write("\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(str(path))


def test_nesting_up_to_the_limit_reaches_the_schema() -> None:
    # At the limit the YAML composes and the schema gives its own message about the value.
    depth = MAX_NESTING - 2  # the top-level mapping and the filter section are two levels
    text = "filter:\n  src: " + "[" * depth + "a" + "]" * depth + "\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml", env={})
    assert str(caught.value) == "c.yaml:2: filter.src[0]: expected a string, got list"
    text = "filter:\n  src: " + "[" * (depth + 1) + "a" + "]" * (depth + 1) + "\n"
    with pytest.raises(ConfigError, match=f"c.yaml:2:{8 + depth}: nested deeper than {MAX_NESTING} levels"):
        parse_config(text, "c.yaml", env={})


def test_crlf_files_keep_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "crlf.yaml"
    path.write_bytes(b"drops:\r\n  enabled: true\r\n  max_series: 1\r\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value) == f"{path}:3: drops.max_series: 1 is out of range 16..1048576"


# --- kernel capacities: `validate` refuses what `run` could not load --------------------------------


@pytest.mark.parametrize(
    ("key", "items", "limit", "where"),
    [
        ("ports", [str(1000 + i) for i in range(39)], 16, "the kernel's path_config.ports"),
        ("src", [f"10.{i >> 8}.{i & 255}.0/24" for i in range(2000)], 1024, "the kernel's filter_src map"),
        ("dst", [f"10.{i >> 8}.{i & 255}.0/24" for i in range(1025)], 1024, "the kernel's filter_dst map"),
        ("interfaces", [f"veth{i}" for i in range(300)], 256, "the kernel's filter_ifaces map"),
    ],
)
def test_validate_refuses_more_than_the_kernel_holds(
    tmp_path: Path, key: str, items: list[str], limit: int, where: str
) -> None:
    path = tmp_path / "big-filter.yaml"
    path.write_text("sampling:\n  one_in: 10\nfilter:\n  " + key + ":\n" + "".join(f"    - {i}\n" for i in items))
    status, _out, err, _cpu = run_measured("validate", str(path))
    assert_one_line(
        status, err, 2, f"pktpath: {path}:5: filter.{key}: {len(items)} entries, more than the {limit} {where} holds"
    )
    path.write_text("filter:\n  " + key + ":\n" + "".join(f"    - {i}\n" for i in items[:limit]))
    status, _out, err, _cpu = run_measured("validate", str(path))
    assert status == 0, err

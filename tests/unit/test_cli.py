"""The CLI as a user runs it: one-line errors, exit statuses, no tracebacks (no root needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.agent_process import pktpath_bin


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([pktpath_bin(), *args], capture_output=True, text=True, timeout=30)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    assert proc.returncode == status, proc
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert text in proc.stderr, proc.stderr


def test_validate_ok(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("metrics:\n  listen: 127.0.0.1:9100\n")
    proc = run("validate", str(cfg))
    assert proc.returncode == 0
    assert proc.stdout == f"{cfg}: ok\n"


def test_validate_names_the_key_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("metrics:\n  listen: 127.0.0.1:9100\nfilter:\n  src: [10.0.0.0/8, 10.1.2.3/40]\n")
    assert_one_line_error(run("validate", str(cfg)), 2, f"pktpath: {cfg}:4: filter.src[1]:")


def test_run_with_bad_config_exits_2_before_touching_the_kernel(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("filter:\n  ports: [80, 70000]\n")
    assert_one_line_error(run("run", "-c", str(cfg)), 2, "filter.ports[1]: port 70000 is out of range")


def test_missing_file() -> None:
    assert_one_line_error(
        run("validate", "/nonexistent/pktpath.yaml"),
        2,
        "pktpath: /nonexistent/pktpath.yaml: cannot read config: No such file or directory",
    )


def test_unknown_command_is_one_line() -> None:
    assert_one_line_error(run("frobnicate"), 2, "invalid choice: 'frobnicate'")

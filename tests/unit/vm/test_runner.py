"""The kernel matrix's runner: its account of a guest that died (the console's own words, not a
guess), and when it rebuilds the guest's image."""

from __future__ import annotations

import os
from pathlib import Path

from tests.vm.runner import GuestResult, _newest

BOOT = [
    "[    0.000000] Linux version 5.10.0-46-amd64 (debian-kernel@lists.debian.org)",
    "guest: running python -m pytest -q tests/vm/guest",
    "........",
]
PANIC = [
    "[  101.123456] BUG: unable to handle page fault for address: ffffa0d2c3a0f000",
    "[  101.123460] Oops: 0000 [#1] SMP NOPTI",
    "[  101.123470] RIP: 0010:ftrace_ops_list_func+0x3c/0x110",
    "[  101.123480] Kernel panic - not syncing: Fatal exception in interrupt",
]


def died(tmp_path: Path, console: list[str]) -> GuestResult:
    (tmp_path / "vng.log").write_text("\n".join(console) + "\n")
    return GuestResult(
        series="5.10",
        kernel=Path("vmlinuz-5.10.0-46-amd64"),
        results=tmp_path,
        status=None,
        vng_status=255,
        timed_out=False,
        seconds=101.0,
    )


def test_a_panic_on_the_console_is_quoted_from_its_first_line(tmp_path: Path) -> None:
    result = died(tmp_path, BOOT + PANIC)
    assert result.console_trouble() == "\n".join(PANIC)
    described = result.describe()
    assert "vng exited 255" in described and "the console shows:\n" + PANIC[0] in described
    assert BOOT[1] not in described


def test_a_quiet_console_says_so(tmp_path: Path) -> None:
    result = died(tmp_path, BOOT)
    assert result.console_trouble() == ""
    assert "the console shows no panic" in result.describe()


def test_the_quote_is_bounded(tmp_path: Path) -> None:
    result = died(tmp_path, BOOT + PANIC + [f"[  102.0] frame {i}" for i in range(500)])
    assert len(result.console_trouble(lines=10).splitlines()) == 10


def test_the_image_is_stale_once_a_file_is_removed_from_a_tree(tmp_path: Path) -> None:
    """Removing a file changes no file's mtime, only its directory's: at the top of a tree too."""
    tree = tmp_path / "tests"
    (tree / "sub").mkdir(parents=True)
    for name in ("top_test.py", "sub/deep_test.py"):
        (tree / name).write_text("")
    for path in (tree, tree / "sub", tree / "top_test.py", tree / "sub" / "deep_test.py"):
        os.utime(path, (1000.0, 1000.0))
    assert _newest([tree]) == 1000.0
    (tree / "top_test.py").unlink()
    assert _newest([tree]) > 1000.0
    os.utime(tree, (1000.0, 1000.0))
    (tree / "sub" / "deep_test.py").unlink()
    assert _newest([tree]) > 1000.0

"""docs/benchmarks.md quotes only what a committed bench run printed.

Every ```text block there is a result block.  The line above it names the run's summary JSON,
`<!-- bench: bench/results/<commit>-<part>.json -->`; that file must be committed, come from a clean
tree, hold the block's lines in its printed table (in order, unedited), and every number in the
block must be one of the numbers in the file.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "benchmarks.md"
MARKER = re.compile(r"^<!-- bench: (\S+) -->$")
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    marker: str | None
    lines: list[str]


def result_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```text":
            before = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
            match = MARKER.match(before)
            end = lines.index("```", i + 1)
            blocks.append(Block(i + 1, match.group(1) if match else None, lines[i + 1 : end]))
            i = end
        i += 1
    return blocks


def numbers(text: str) -> set[str]:
    """Number tokens, without thousands separators: '1,027,689' and 1027689 are the same number."""
    return {n.replace(",", "") for n in NUMBER.findall(text)}


def is_subsequence(part: list[str], whole: list[str]) -> bool:
    it = iter(whole)
    return all(any(line == w for w in it) for line in part)


def tracked(path: str) -> bool:
    proc = subprocess.run(["git", "-C", str(REPO), "ls-files", "--error-unmatch", path], capture_output=True)
    return proc.returncode == 0


def problems(block: Block, repo: Path = REPO, check_tracked: bool = True) -> list[str]:
    where = f"docs/benchmarks.md:{block.line}"
    if block.marker is None:
        return [f"{where}: result block without a '<!-- bench: bench/results/....json -->' line above it"]
    if not block.marker.startswith("bench/results/") or not block.marker.endswith(".json"):
        return [f"{where}: {block.marker} is not a summary under bench/results/"]
    path = repo / block.marker
    if not path.exists():
        return [f"{where}: {block.marker} does not exist"]
    out = []
    if check_tracked and not tracked(block.marker):
        out.append(f"{where}: {block.marker} is not committed")
    raw = path.read_text()
    summary = json.loads(raw)
    source = summary.get("source", {})
    if not source.get("commit") or source.get("dirty") is not False:
        out.append(f"{where}: {block.marker} was measured on a tree with uncommitted changes (or no commit)")
    if not is_subsequence(block.lines, summary.get("printed", [])):
        missing = next((ln for ln in block.lines if ln not in summary.get("printed", [])), None)
        out.append(f"{where}: the block is not the printed table of {block.marker} (e.g. {missing!r})")
    extra = numbers("\n".join(block.lines)) - numbers(raw)
    if extra:
        out.append(f"{where}: numbers not in {block.marker}: {sorted(extra)[:10]}")
    return out


def test_every_result_block_is_a_committed_run() -> None:
    blocks = result_blocks(DOC.read_text())
    assert blocks, "docs/benchmarks.md quotes no run at all"
    found = [p for b in blocks for p in problems(b)]
    assert not found, "\n".join(found)


# --- the check itself catches what it is for -------------------------------------------------------


@pytest.fixture
def fake_repo(tmp_path: Path) -> Path:
    (tmp_path / "bench" / "results").mkdir(parents=True)
    summary = {
        "source": {"commit": "abc1234", "dirty": False},
        "printed": [
            "Start-up (3 starts)        median       max   target",
            "  spawn -> log 'first probe attached'  140.1 ms  149.4 ms   < 200 ms ok",
            "  SIGTERM -> exit                      114.0 ms  114.6 ms",
        ],
        "parts": {"startup": {"summary": {"max": 149.4}}},
    }
    (tmp_path / "bench" / "results" / "abc1234-startup.json").write_text(json.dumps(summary))
    return tmp_path


def check(doc: str, repo: Path) -> list[str]:
    return [p for b in result_blocks(doc) for p in problems(b, repo, check_tracked=False)]


def test_a_verbatim_block_passes_and_edits_do_not(fake_repo: Path) -> None:
    marker = "<!-- bench: bench/results/abc1234-startup.json -->\n"
    good = (
        "Start-up (3 starts)        median       max   target\n"
        "  SIGTERM -> exit                      114.0 ms  114.6 ms\n"
    )
    assert check(f"{marker}\n```text\n{good}```\n", fake_repo) == []
    edited = good.replace("114.6", "104.6")
    assert any("not the printed table" in p for p in check(f"{marker}```text\n{edited}```\n", fake_repo))
    assert any("numbers not in" in p for p in check(f"{marker}```text\n{edited}```\n", fake_repo))
    assert any("without a" in p for p in check(f"```text\n{good}```\n", fake_repo))
    missing = marker.replace("abc1234", "def5678")
    assert any("does not exist" in p for p in check(f"{missing}```text\n{good}```\n", fake_repo))


def test_a_dirty_run_cannot_be_quoted(fake_repo: Path) -> None:
    path = fake_repo / "bench" / "results" / "abc1234-startup.json"
    summary = json.loads(path.read_text())
    summary["source"]["dirty"] = True
    path.write_text(json.dumps(summary))
    doc = (
        "<!-- bench: bench/results/abc1234-startup.json -->\n```text\n"
        "  SIGTERM -> exit                      114.0 ms  114.6 ms\n```\n"
    )
    assert any("uncommitted changes" in p for p in check(doc, fake_repo))

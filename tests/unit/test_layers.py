"""The import graph: every arrow points down, and only the loader and the kernel facade touch libbpf.

Layers, bottom first (a module imports only from lower layers, or from its own package; sideways only
at the bottom and the top):
  0  model, errors, kernel.api        the data model, the hop table, names, the ABI mirror; the kernel
                                       side's interface
  1  config                           the YAML schema
  2  decoders, loader, k8s            bytes -> values; load/attach (libbpf); pods
  3  paths                            paths from hop events; live control of the kernel's filter
  4  metrics, traces                  Prometheus; OpenTelemetry
  5  interactive                      pktpath shell / trace
  6  kernel.facade, logs              the kernel side over the engine; logging setup
  7  agent, cli, doc_tables, __main__ composition
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "exporter"
LAYERS = {
    "model": 0,
    "errors": 0,
    "kernel.api": 0,
    "__init__": 0,
    "bpf": 0,
    "config": 1,
    "decoders": 2,
    "loader": 2,
    "k8s": 2,
    "paths": 3,
    "metrics": 4,
    "traces": 4,
    "interactive": 5,
    "kernel.facade": 6,
    "logs": 6,
    "kernel": 6,
    "agent": 7,
    "cli": 7,
    "doc_tables": 7,
    "__main__": 7,
}
MIDDLE = ("decoders", "paths", "metrics", "traces", "interactive")


def unit(module: str) -> str:
    """The layer unit of a dotted name under exporter: a package, or kernel.api / kernel.facade."""
    parts = module.split(".")
    if parts[0] == "kernel" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def imports() -> list[tuple[str, str]]:
    """(importing module, imported module), both relative to exporter."""
    edges = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("exporter"):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("exporter")]
            for name in names:
                target = name.removeprefix("exporter").lstrip(".")
                if target and (
                    (PACKAGE / Path(*target.split("."))).with_suffix(".py").exists()
                    or (PACKAGE / Path(*target.split(".")) / "__init__.py").exists()
                ):
                    edges.append((module, target))
    return edges


def test_every_import_points_down() -> None:
    upward = []
    for src, dst in imports():
        s, d = unit(src), unit(dst)
        if s == d or (s.startswith("kernel") and d.startswith("kernel")):
            continue
        # Sideways only at the bottom (errors) and the top (cli composes the agent).
        if LAYERS[d] > LAYERS[s] or (LAYERS[d] == LAYERS[s] and LAYERS[s] not in (0, 7)):
            upward.append(f"{src} -> {dst}")
    assert upward == []


def test_the_middle_never_touches_the_kernel_directly() -> None:
    offending = [
        f"{src} -> {dst}"
        for src, dst in imports()
        if src.split(".")[0] in MIDDLE and (dst.startswith(("loader", "kernel.facade")) or dst == "kernel")
    ]
    assert offending == []


def test_only_the_loader_and_the_facade_use_libbpf() -> None:
    users = {src for src, dst in imports() if dst.startswith("loader.libbpf")}
    assert {u for u in users if not u.startswith("loader")} <= {"kernel.facade", "agent", "cli", "doc_tables"}


def test_the_architecture_doc_lists_these_layers() -> None:
    """docs/architecture.md's folder table gives each folder the layer LAYERS gives it."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    section = text[text.index("## Folders are stages") :]
    rows = [line for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows
    for row in rows:
        layer, folders = (cell.strip() for cell in row.strip("|").split("|")[:2])
        for path in re.findall(r"`exporter/([^`]+)`", folders):
            name = path.removesuffix("/").removesuffix(".py").replace("/", ".")
            assert LAYERS[unit(name)] == int(layer), (path, layer)

"""`helm lint` and `helm template` for the deploy tests, without a helm CLI.

The package registries this project can use ship no current helm CLI for Linux (PyPI's "helm"
packages are wrappers that expect the binary, or carry only macOS/Windows builds; the newest one
bundled on npm is helm 3.10 from 2022). `helm-python-sdk` (PyPI, pinned in pyproject's test extras) ships
libhelm_c, a C ABI over Helm v4's official Go SDK: `lint` is the action behind `helm lint`, and
`Chart.render` is the client-only dry-run install behind `helm template`, values.schema.json
validation included. So the chart is checked by Helm's own code, not by a re-implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

try:
    import helm_python
except ImportError as exc:  # fail loudly: without helm the chart is untested
    raise ImportError(
        "helm-python-sdk is not installed: `make venv` installs the test extras of pyproject.toml"
    ) from exc

helm_python.disable_logging()  # one INFO line per symlinked file per call otherwise

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "pktpath"
KUBE_VERSION = "v1.30.0"

# Helm's lint severities.
INFO, WARNING, ERROR = 1, 2, 3


class HelmError(Exception):
    pass


def lint(values: dict[str, Any] | None = None, chart: Path = CHART) -> list[dict[str, Any]]:
    """`helm lint --strict` (warnings fail too); returns the remaining INFO messages."""
    report = helm_python.lint(str(chart), values, strict=True, kube_version=KUBE_VERSION)
    bad = [m for m in report["messages"] if m["severity"] >= WARNING]
    if report["errors"] or bad:
        raise HelmError(f"helm lint failed: {report['errors']} {bad}")
    return [m for m in report["messages"] if m["severity"] < WARNING]


@dataclass
class Rendered:
    docs: list[dict[str, Any]]  # every Kubernetes object, in template order
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]

    def yaml(self, kinds: set[str] | None = None) -> str:
        """The objects as one multi-document YAML stream, like `helm template` prints."""
        return yaml.safe_dump_all([d for d in self.docs if kinds is None or d["kind"] in kinds], sort_keys=False)


def template(
    values: dict[str, Any] | None = None, release: str = "pktpath", namespace: str = "monitoring", chart: Path = CHART
) -> Rendered:
    """`helm template RELEASE CHART -n NAMESPACE` with the given values (schema-checked)."""
    try:
        with helm_python.Chart.load(str(chart)) as loaded:
            files = loaded.render(values=values, name=release, namespace=namespace, is_install=True)
    except helm_python.HelmError as exc:
        raise HelmError(str(exc)) from exc
    docs: list[dict[str, Any]] = []
    notes = ""
    for name, text in sorted(files.items(), key=lambda kv: kv[0]):
        if name.endswith("NOTES.txt"):
            notes = text
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return Rendered(docs, notes)

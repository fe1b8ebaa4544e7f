"""Host facts read from injectable /sys and /proc roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.errors import KernelError
from exporter.loader.host import Host


def fake_host(tmp_path: Path, caps: str, btf: bool = True, lockdown: str | None = None) -> Host:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/osrelease").write_text("6.1.0-99-amd64\n")
    (tmp_path / "proc/self/status").write_text(f"Name:\tpktpath\nCapEff:\t{caps}\n")
    (tmp_path / "sys/kernel/btf").mkdir(parents=True)
    if btf:
        (tmp_path / "sys/kernel/btf/vmlinux").write_bytes(b"\x9f\xeb")
    if lockdown:
        (tmp_path / "sys/kernel/security").mkdir(parents=True)
        (tmp_path / "sys/kernel/security/lockdown").write_text(lockdown)
    return Host(sys_root=str(tmp_path / "sys"), proc_root=str(tmp_path / "proc"))


def test_facts(tmp_path: Path) -> None:
    host = fake_host(tmp_path, caps="000001ffffffffff", lockdown="none [integrity] confidentiality\n")
    assert host.kernel_release() == "6.1.0-99-amd64"
    assert host.lockdown() == "integrity"
    assert host.can_load_bpf()
    host.require_bpf()


def test_cap_bpf_and_perfmon_are_enough(tmp_path: Path) -> None:
    assert fake_host(tmp_path, caps=f"{(1 << 39) | (1 << 38):016x}").can_load_bpf()


def test_cap_bpf_alone_is_not(tmp_path: Path) -> None:
    host = fake_host(tmp_path, caps=f"{1 << 39:016x}")
    with pytest.raises(KernelError, match=r"^permission denied: loading BPF programs needs root"):
        host.require_bpf()


def test_no_btf(tmp_path: Path) -> None:
    host = fake_host(tmp_path, caps="000001ffffffffff", btf=False)
    assert host.lockdown() is None
    with pytest.raises(KernelError, match=r"kernel/btf/vmlinux not found: this kernel has no BTF"):
        host.require_bpf()

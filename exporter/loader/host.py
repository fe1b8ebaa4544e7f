"""What this host offers BPF: kernel release, BTF, lockdown, privileges.

Pure file reads with the roots injectable, so unit tests run without root and
`pktpath check` can report on a host without loading anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from exporter.errors import KernelError

# Capability bits (include/uapi/linux/capability.h).
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


@dataclass(frozen=True)
class Host:
    sys_root: str = "/sys"
    proc_root: str = "/proc"

    @property
    def vmlinux_btf(self) -> str:
        return os.path.join(self.sys_root, "kernel/btf/vmlinux")

    def kernel_release(self) -> str:
        try:
            with open(os.path.join(self.proc_root, "sys/kernel/osrelease")) as f:
                return f.read().strip()
        except OSError:
            return os.uname().release

    def kernel_version(self) -> tuple[int, int]:
        """(major, minor) of the running kernel ("5.10.0-46-amd64" -> (5, 10)); (0, 0) if unreadable.
        Only for facts BTF cannot tell."""
        parts = self.kernel_release().split(".")
        try:
            return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
        except (IndexError, ValueError):
            return (0, 0)

    def has_btf(self) -> bool:
        return os.path.exists(self.vmlinux_btf)

    def lockdown(self) -> str | None:
        """Active lockdown mode ("none", "integrity", "confidentiality"), None if unknown.

        The file reads like "none [integrity] confidentiality"; it exists only
        where securityfs is mounted (mount -t securityfs none /sys/kernel/security).
        """
        try:
            with open(os.path.join(self.sys_root, "kernel/security/lockdown")) as f:
                text = f.read()
        except OSError:
            return None
        start, end = text.find("["), text.find("]")
        return text[start + 1 : end] if 0 <= start < end else None

    def has_kprobes(self) -> bool:
        """A kprobe PMU (4.17+), or the legacy tracefs kprobe_events libbpf falls back to."""
        return any(
            os.path.exists(os.path.join(self.sys_root, p))
            for p in (
                "bus/event_source/devices/kprobe/type",
                "kernel/tracing/kprobe_events",
                "kernel/debug/tracing/kprobe_events",
            )
        )

    def effective_caps(self) -> int:
        try:
            with open(os.path.join(self.proc_root, "self/status")) as f:
                for line in f:
                    if line.startswith("CapEff:"):
                        return int(line.split()[1], 16)
        except (OSError, ValueError):
            pass
        return 0

    def can_load_bpf(self) -> bool:
        """CAP_BPF+CAP_PERFMON (5.8+) or the older all-in-one CAP_SYS_ADMIN."""
        caps = self.effective_caps()

        def has(bit: int) -> bool:
            return bool(caps >> bit & 1)

        return has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON))

    def require_bpf(self) -> None:
        """Raise a one-line KernelError unless BPF programs can be loaded here."""
        if not self.has_btf():
            raise KernelError(
                f"{self.vmlinux_btf} not found: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF=y is needed, "
                "as in every major distribution kernel since 2021)"
            )
        if not self.can_load_bpf():
            raise KernelError(
                f"permission denied: loading BPF programs needs root, or CAP_BPF, CAP_PERFMON and "
                f"CAP_NET_ADMIN (running as uid {os.geteuid()} without them)"
            )

"""Boot a stock kernel under QEMU (virtme-ng, software emulation) and run one command in it as root.

The guest sees this machine's root file system read-only (virtme shares it
over 9p, with writable overlays on /etc, /tmp, /usr, /var ...), so the
project's venv, its BPF objects and the repo are all there at the same paths.
Only the results directory is shared back read-write: the command's output
(guest.log), its exit status (exit-status) and whatever the command writes
there (a junit xml, agent logs).

The exit status is taken from that file rather than from vng: vng returns it
only when udev in the guest created the virtio ports, and a guest that died or
was killed leaves no file, which is then reported as "no status".

Used by tests/vm/test_kernels.py, and by hand through scripts/vm/run-in-kernel:

    scripts/vm/run-in-kernel 6.1 -- .venv/bin/pktpath check --json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

REPO = Path(__file__).resolve().parents[2]
KERNEL_CACHE = Path(os.environ.get("PKTPATH_KERNEL_CACHE", REPO / "tests" / "vm" / ".cache" / "kernels"))
VENV_BIN = REPO / ".venv" / "bin"
SERIES = ("5.10", "6.1", "6.12")

# Boot of a Debian kernel under TCG, udev coldplug included, takes 15-30 s on
# 2 host cores; the guest's own deadline leaves this much before the host kills
# QEMU, so a hung command still gets its output and status written.
BOOT_ALLOWANCE = 120.0
# Environment variables of the host that reach the guest command when set.
PASSED_THROUGH = ("PKTPATH_TEST_PROBE_MODE",)
# Set in the guest (to the kernel series): tests/vm/guest only runs where it is.
GUEST_MARK = "PKTPATH_VM_GUEST"


class VMError(RuntimeError):
    """The VM could not be started (missing kernel, vng, QEMU)."""


@dataclass
class GuestResult:
    series: str
    kernel: Path
    results: Path
    status: int | None  # the command's exit status in the guest; None: it never finished
    vng_status: int | None  # vng's own exit status; None: killed at the host deadline
    timed_out: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == 0

    def log(self) -> str:
        """What the command printed in the guest, else what the VM's console showed."""
        for name in ("guest.log", "vng.log"):
            path = self.results / name
            if path.exists() and path.stat().st_size:
                return path.read_text(errors="replace")
        return ""

    def describe(self) -> str:
        if self.timed_out:
            what = "timed out (QEMU killed)"
        elif self.status is None:
            what = f"guest gave no exit status (vng exited {self.vng_status}: kernel panic or boot failure?)"
        else:
            what = f"exit status {self.status}"
        return f"kernel {self.series} ({self.kernel.name}): {what} after {self.seconds:.0f}s; results in {self.results}"


def kernel_image(series_or_path: str) -> Path:
    """The vmlinuz of a fetched series ("6.1", "6.12"), or a vmlinuz path given as is."""
    path = Path(series_or_path)
    if path.is_file():
        return path.resolve()
    images = sorted((KERNEL_CACHE / series_or_path / "boot").glob("vmlinuz-*"))
    if not images:
        raise VMError(f"no kernel {series_or_path!r} in {KERNEL_CACHE}: run scripts/vm/fetch-kernels")
    return images[-1].resolve()


def kernel_package(series_or_path: str) -> str:
    """The Debian package and version the series was unpacked from (fetch-kernels writes it)."""
    stamp = kernel_image(series_or_path).parents[1] / "PACKAGE"
    return stamp.read_text().strip() if stamp.exists() else "unknown package"


def _guest_script(command: Sequence[str], results: Path, env: Mapping[str, str], deadline: float) -> str:
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))
    cmd = shlex.join(command)
    out = shlex.quote(str(results / "guest.log"))
    status = shlex.quote(str(results / "exit-status"))
    return f"""#!/bin/sh
# Written by tests/vm/runner.py; runs as root (pid 1's child) in the guest.
export PATH={shlex.quote(str(VENV_BIN))}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PYTHONDONTWRITEBYTECODE=1  # the repo is read-only in the guest
export PYTHONUNBUFFERED=1
{exports}
# virtme mounts tracefs and debugfs; libbpf and the agent may also want bpffs.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
cd {shlex.quote(str(REPO))} || exit 125
echo "guest: $(uname -r), $(nproc) cpus, $(awk '/MemTotal/ {{print $2 " kB"}}' /proc/meminfo)"
echo {shlex.quote(f"guest: running {cmd}")}
# The guest's own deadline, shorter than the host's: a hung command is killed
# here (status 124) and its output and status still get written.
{{ timeout -k 10 {int(deadline)} {cmd}; echo $? >{status}; }} 2>&1 | tee {out}
exit "$(cat {status} 2>/dev/null || echo 125)"
"""


def _vng() -> Path:
    vng = Path(sys.executable).parent / "vng"
    if not vng.exists():
        vng = VENV_BIN / "vng"
    if not vng.exists():
        raise VMError("vng not installed: pip install -e '.[vm]' (make test-kernels does)")
    return vng


def run_in_kernel(series_or_path: str, command: Sequence[str], results: Path | None = None, *,
                  timeout: float = 900.0, env: Mapping[str, str] | None = None, memory: str = "1G",
                  cpus: int = 2, echo: bool = False, qemu_opts: str = "-accel tcg,tb-size=128") -> GuestResult:
    """Boot the kernel, run `command` (from the repo's directory, as root), return how it went.

    `results` is shared read-write with the guest at the same path; `timeout`
    bounds the whole VM, boot included.  `qemu_opts` replaces the accelerator
    options (bench/hops.py adds -icount, so guest time counts instructions).  QEMU is killed on timeout and on any
    error or interrupt here, so no VM outlives the call.
    """
    kernel = kernel_image(series_or_path)
    series = series_or_path if not Path(series_or_path).is_file() else kernel.name
    results = Path(results or tempfile.mkdtemp(prefix="pktpath-vm-")).resolve()
    results.mkdir(parents=True, exist_ok=True)
    for stale in ("guest.log", "exit-status", "vng.log"):
        (results / stale).unlink(missing_ok=True)

    guest_env = {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}
    guest_env.update(env or {})
    guest_env[GUEST_MARK] = series
    script = results / "guest.sh"
    script.write_text(_guest_script(command, results, guest_env, max(timeout - BOOT_ALLOWANCE, 30.0)))
    script.chmod(0o755)

    vng = _vng()
    argv = [str(vng), "--run", str(kernel),
            # KVM cannot run a stock kernel on this machine kind: software emulation.
            "--disable-kvm",
            # virtiofsd is not available; 9p is a module in these kernels, which
            # virtme loads from the unpacked lib/modules beside the vmlinuz.
            "--force-9p",
            "-m", memory, "-p", str(cpus),
            f"--qemu-opts={qemu_opts}",
            f"--rwdir={results}",
            "--user", "root",
            "--exec", f"sh {shlex.quote(str(script))}"]
    # vng runs virtme-run and QEMU by name: the venv's bin must be on PATH.
    host_env = dict(os.environ, PATH=f"{vng.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")

    started = time.monotonic()
    timed_out = False
    vng_status: int | None = None
    with open(results / "vng.log", "wb") as log:
        # A session of its own: vng, virtme-run and QEMU form one process group
        # that can be ended as a whole without touching anything else.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=host_env, cwd=REPO, start_new_session=True)
        pump = threading.Thread(target=_pump, args=(proc, log, echo), daemon=True)
        pump.start()
        try:
            vng_status = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if proc.poll() is None:
                _kill_group(proc)
            pump.join(10)
    seconds = time.monotonic() - started

    status: int | None = None
    with contextlib.suppress(OSError, ValueError):  # no file, or cut short: the guest never finished
        status = int((results / "exit-status").read_text().strip())
    return GuestResult(series=series, kernel=kernel, results=results, status=status, vng_status=vng_status,
                       timed_out=timed_out, seconds=seconds)


def _pump(proc: subprocess.Popen[bytes], log: BinaryIO, echo: bool) -> None:
    """Copy the VM's console to vng.log (and to our stdout when echoing)."""
    assert proc.stdout is not None
    for line in iter(proc.stdout.readline, b""):
        log.write(line)
        log.flush()
        if echo:
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """End vng and its QEMU: SIGTERM to the group we created, SIGKILL if it lingers."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="run-in-kernel",
        description="Boot a stock kernel under QEMU and run a command in it as root, from the repo's directory.")
    parser.add_argument("kernel", help=f"a fetched series ({', '.join(SERIES)}) or a vmlinuz path")
    parser.add_argument("command", nargs="+", help="the command to run in the guest (put it after --)")
    parser.add_argument("--results", type=Path, help="directory shared back read-write (default: a new temp dir)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for boot and command (default 900)")
    parser.add_argument("--mode", help="PKTPATH_TEST_PROBE_MODE for the guest (auto, kprobe, tracepoint)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="more guest environment")
    parser.add_argument("-m", "--memory", default="1G")
    parser.add_argument("-p", "--cpus", type=int, default=2)
    args = parser.parse_args(argv)

    env = dict(item.split("=", 1) for item in args.env)
    if args.mode:
        env["PKTPATH_TEST_PROBE_MODE"] = args.mode
    try:
        result = run_in_kernel(args.kernel, args.command, args.results, timeout=args.timeout, env=env,
                               memory=args.memory, cpus=args.cpus, echo=True)
    except VMError as e:
        print(f"run-in-kernel: {e}", file=sys.stderr)
        return 2
    print(f"run-in-kernel: {result.describe()}", file=sys.stderr)
    return result.status if result.status is not None else 125


if __name__ == "__main__":
    sys.exit(main())

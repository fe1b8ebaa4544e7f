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
import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
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
KERNEL_CONFIG = "PKTPATH_VM_KERNEL_CONFIG"  # the guest kernel's build config, where the deb has one
# Set in the guest (to the kernel series): tests/vm/guest only runs where it is.
GUEST_MARK = "PKTPATH_VM_GUEST"
IMAGE_CACHE = REPO / "tests" / "vm" / ".cache"
# Top-level entries of the image's trees that the guest never imports (dev tools, the base
# interpreter's own site-packages, Tk, the stdlib's tests): leaving them out halves the image.
IMAGE_SKIP = {
    "site-packages",
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "helm_python",
    "kubernetes_validate",
    "mypy",
    "mypyc",
    "pip",
}
IMAGE_SKIP_ANYWHERE = {".cache", ".pytest_cache", ".mypy_cache", ".ruff_cache"}  # tests/vm/.cache: kernels, the image


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

    def console_trouble(self, lines: int = 60) -> str:
        """The kernel's own account of trouble on the console (vng.log): from the first panic,
        oops, BUG, WARN, lockup or OOM kill on, at most `lines` lines; "" if it showed none."""
        path = self.results / "vng.log"
        if not path.exists():
            return ""
        console = path.read_text(errors="replace").splitlines()
        first = next((i for i, line in enumerate(console) if _TROUBLE.search(line)), None)
        return "" if first is None else "\n".join(console[first : first + lines])

    def describe(self) -> str:
        if self.timed_out:
            what = "timed out (QEMU killed)"
        elif self.status is None:
            trouble = self.console_trouble()
            cause = "the console shows:\n" + trouble if trouble else "the console shows no panic: boot failure?"
            what = f"guest gave no exit status (vng exited {self.vng_status}); {cause}"
        else:
            what = f"exit status {self.status}"
        return f"kernel {self.series} ({self.kernel.name}): {what} after {self.seconds:.0f}s; results in {self.results}"


# What a kernel prints when it is in trouble (panic, oops, BUG, WARN, lockups, the OOM killer).
_TROUBLE = re.compile(
    r"Kernel panic|BUG:|Oops|general protection fault|------------\[ cut here \]|"
    r"soft lockup|hard LOCKUP|rcu_sched detected stall|rcu: INFO|Out of memory|invalid opcode"
)


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


# The programs the guest tests run most (a lab alone runs about 30 of them), whose binaries and
# libraries go into the image too.
IMAGE_TOOLS = (
    "ip",
    "sysctl",
    "iptables",
    "iptables-legacy",
    "nft",
    "ping",
    "taskset",
    "timeout",
    "bpftool",
    "modprobe",
    "sh",
    "tee",
    "cat",
)


def _libraries(binaries: Sequence[Path]) -> set[Path]:
    """The shared libraries the dynamic loader maps for these binaries (ldd), as real paths."""
    found: set[Path] = set()
    ldd = subprocess.run(["ldd", *map(str, binaries)], capture_output=True, text=True)
    for line in ldd.stdout.splitlines():
        parts = line.split()
        path = parts[2] if len(parts) >= 3 and parts[1] == "=>" else parts[0] if parts else ""
        if path.startswith("/") and os.path.isfile(path):
            found.add(Path(path).resolve())
    return found


def _image_trees() -> list[Path]:
    """What the guest's processes read most: the interpreter's library and standard library, the
    venv's packages, the repo's code, and the tools the tests run with their libraries.  Over
    virtme's 9p root (no cache) each file access is a round trip through the emulated machine:
    `python -c pass` takes 2.5 s there, about 1 s from the image."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    libpython = Path(sysconfig.get_config_var("LIBDIR") or "/nonexistent") / (
        sysconfig.get_config_var("INSTSONAME") or "libpython-none"
    )
    trees = [stdlib, Path(sysconfig.get_paths()["purelib"]), REPO / "exporter", REPO / "tests"]
    tools = [Path(t).resolve() for t in map(shutil.which, IMAGE_TOOLS) if t]
    interpreter = Path(os.path.realpath(sys.executable))
    # Python's own extension modules (ssl, ctypes ...) and the venv's (grpc ...) load system libraries.
    extensions = [
        so for tree in trees[:2] for so in tree.rglob("*.so") if not _skipped(so.relative_to(tree).parts[0], True)
    ]
    files = {libpython, interpreter, *tools, *_libraries([*tools, interpreter, *extensions])}
    xtables = Path("/usr/lib/x86_64-linux-gnu/xtables")  # iptables' match and target plugins
    return trees + ([xtables] if xtables.is_dir() else []) + sorted(f for f in files if f.is_file())


def _skipped(name: str, top: bool) -> bool:
    if name in IMAGE_SKIP_ANYWHERE:
        return True
    return top and (name in IMAGE_SKIP or name.startswith("config-") or "__mypyc" in name)


def _newest(trees: Sequence[Path]) -> float:
    """The latest change under the trees.  A directory's own mtime counts: removing or renaming a
    file changes only its directory's, and the image must lose that file too."""
    newest = 0.0
    for tree in trees:
        newest = max(newest, tree.stat().st_mtime)
        if tree.is_file():
            continue
        for root, dirs, files in os.walk(tree):
            dirs[:] = [d for d in dirs if not _skipped(d, Path(root) == tree)]
            for name in (*files, *dirs):
                with contextlib.suppress(OSError):
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def guest_image(cache: Path = IMAGE_CACHE) -> Path | None:
    """A read-only ext4 image of _image_trees(), attached to the guest as a disk and bind-mounted
    over the same paths (_guest_script), so Python reads them through the guest's page cache:
    process start-ups take about a third of the time.  Rebuilt when a file in them is newer;
    None (the guest then reads everything over 9p) when mke2fs is missing or fails."""
    mke2fs = shutil.which("mke2fs") or "/usr/sbin/mke2fs"
    if not os.access(mke2fs, os.X_OK):
        return None
    trees = _image_trees()
    image = cache / "guest.img"
    manifest = cache / "guest.img.binds"

    def fresh() -> bool:
        return image.exists() and manifest.exists() and image.stat().st_mtime >= _newest(trees)

    if fresh():
        return image
    cache.mkdir(parents=True, exist_ok=True)
    # Runners started together (two kernels on two cores) would each build the image at one
    # temporary path: one builds, the others wait for it and find it fresh.  A guest already
    # running keeps the image it opened; the rename only replaces the name.
    with open(cache / ".guest.img.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return image if fresh() else _build_image(mke2fs, trees, image, manifest)


def _build_image(mke2fs: str, trees: list[Path], image: Path, manifest: Path) -> Path | None:
    cache = image.parent
    with tempfile.TemporaryDirectory(dir=cache, prefix=".image-") as staging:
        binds = []
        for n, tree in enumerate(trees):
            dest = Path(staging) / str(n)
            if tree.is_file():
                shutil.copy2(tree, dest)
            else:
                shutil.copytree(
                    tree,
                    dest,
                    symlinks=True,
                    ignore=lambda d, names, top=tree: [x for x in names if _skipped(x, Path(d) == top)],
                )
            binds.append(f"{n} {tree}")
        size = sum(f.stat().st_size for f in Path(staging).rglob("*") if f.is_file() and not f.is_symlink())
        files = sum(1 for _ in Path(staging).rglob("*"))
        tmp = cache / ".guest.img.new"
        tmp.unlink(missing_ok=True)
        made = subprocess.run(
            [
                mke2fs,
                "-q",
                "-t",
                "ext4",
                "-O",
                "^has_journal",
                "-N",
                str(files + 4096),
                "-d",
                staging,
                "-L",
                "pktpath",
                str(tmp),
                f"{size * 13 // 10 // 1024 + 65536}k",
            ],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            tmp.unlink(missing_ok=True)
            print(
                f"runner: no guest image ({made.stderr.strip()}): the guest reads everything over 9p", file=sys.stderr
            )
            return None
        tmp.rename(image)
        manifest.write_text("\n".join(binds) + "\n")
    return image


def _image_mounts(image: Path | None) -> str:
    """Guest shell: mount the image (virtio disk vda) and bind its trees over their paths."""
    if image is None:
        return "# no guest image: everything is read over 9p\n"
    binds = "".join(
        f"mount --bind /tmp/pktpath-image/{n} {shlex.quote(target)} || ok=0\n"
        for n, target in (
            line.split(" ", 1) for line in (image.parent / "guest.img.binds").read_text().splitlines() if line
        )
    )
    return f"""# The repo, venv and standard library from a disk image (runner.guest_image): page-cached reads.
# virtme links /lib/modules/<release> to the unpacked kernel tree, which by default lives under
# tests/vm/.cache: the image leaves .cache out, so binding tests/ over 9p would hide every
# module.  Pin the tree first with a bind mount, which keeps the 9p directory it was made from.
mods=/lib/modules/$(uname -r)
if [ -L "$mods" ]; then
    tree=$(readlink -f "$mods") && rm "$mods" && mkdir "$mods" && mount --bind "$tree" "$mods" \
        || echo "guest: cannot pin $mods: modules under the repo may be hidden by the image" >&2
fi
ok=1
modprobe -q -a virtio_blk ext4 || ok=0
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.3; done
mkdir -p /tmp/pktpath-image && mount -o ro /dev/vda /tmp/pktpath-image || ok=0
if [ "$ok" = 1 ]; then
{binds}fi
if [ "$ok" = 1 ]; then echo "guest: repo, venv and stdlib from the disk image"
else echo "guest: disk image not used: reading over 9p"; fi
"""


def _guest_script(
    command: Sequence[str], results: Path, env: Mapping[str, str], deadline: float, image: Path | None = None
) -> str:
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
{_image_mounts(image)}cd {shlex.quote(str(REPO))} || exit 125
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


# Software emulation, with the vCPUs taking turns on one host thread (thread=single) rather than
# a host thread each (multi-threaded TCG, QEMU's default for x86).  Under multi-threaded TCG the
# guest kernels patch their own code unsafely: with a ping flood and sampling windows every 2 s,
# 5.10, 6.1 and 6.12 each died within 1-5 minutes (a jump to address 0 out of an ftrace trampoline
# as kprobes came and went, an int3 left in a tracepoint's static branch), while one thread ran the
# same load for 6 minutes on each without a fault (docs/kernels.md: "Code patching under TCG").
# tb-size: a larger translation cache than the default, for the guest's Python and the kernel.
TCG_OPTS = "-accel tcg,thread=single,tb-size=128"


def run_in_kernel(
    series_or_path: str,
    command: Sequence[str],
    results: Path | None = None,
    *,
    timeout: float = 900.0,
    env: Mapping[str, str] | None = None,
    memory: str = "1G",
    cpus: int = 2,
    echo: bool = False,
    qemu_opts: str = TCG_OPTS,
    use_image: bool = True,
) -> GuestResult:
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
    # The kernel's build config (the deb's boot/config-<release>), for tests whose expectation
    # depends on what Debian built in (CONFIG_FPROBE: kprobe.multi): a copy in the shared results.
    config = kernel.parent / kernel.name.replace("vmlinuz-", "config-", 1)
    if config.is_file():
        shutil.copyfile(config, results / "kernel.config")
        guest_env[KERNEL_CONFIG] = str(results / "kernel.config")
    image = guest_image() if use_image else None
    if image is not None:
        qemu_opts += f" -drive file={image},if=virtio,format=raw,readonly=on"
    script = results / "guest.sh"
    script.write_text(_guest_script(command, results, guest_env, max(timeout - BOOT_ALLOWANCE, 30.0), image))
    script.chmod(0o755)

    vng = _vng()
    argv = [
        str(vng),
        "--run",
        str(kernel),
        # KVM cannot run a stock kernel on this machine kind: software emulation.
        "--disable-kvm",
        # virtiofsd is not available; 9p is a module in these kernels, which
        # virtme loads from the unpacked lib/modules beside the vmlinuz.
        "--force-9p",
        "-m",
        memory,
        "-p",
        str(cpus),
        f"--qemu-opts={qemu_opts}",
        # The kernel's console into vng.log: without it a guest that dies (a panic, an oops in
        # init) leaves no word of why.  loglevel=5 keeps warnings and worse (a WARN, an oops; a
        # panic raises the level itself), not the boot chatter or the tests' own LOG lines.
        "--verbose",
        "--append",
        "loglevel=5",
        f"--rwdir={results}",
        "--user",
        "root",
        "--exec",
        f"sh {shlex.quote(str(script))}",
    ]
    # vng runs virtme-run and QEMU by name: the venv's bin must be on PATH.
    host_env = dict(os.environ, PATH=f"{vng.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")

    started = time.monotonic()
    timed_out = False
    vng_status: int | None = None
    with open(results / "vng.log", "wb") as log:
        # A session of its own: vng, virtme-run and QEMU form one process group
        # that can be ended as a whole without touching anything else.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=host_env,
            cwd=REPO,
            start_new_session=True,
        )
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
    return GuestResult(
        series=series,
        kernel=kernel,
        results=results,
        status=status,
        vng_status=vng_status,
        timed_out=timed_out,
        seconds=seconds,
    )


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
        description="Boot a stock kernel under QEMU and run a command in it as root, from the repo's directory.",
    )
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
        result = run_in_kernel(
            args.kernel,
            args.command,
            args.results,
            timeout=args.timeout,
            env=env,
            memory=args.memory,
            cpus=args.cpus,
            echo=True,
        )
    except VMError as e:
        print(f"run-in-kernel: {e}", file=sys.stderr)
        return 2
    print(f"run-in-kernel: {result.describe()}", file=sys.stderr)
    return result.status if result.status is not None else 125


if __name__ == "__main__":
    sys.exit(main())

"""Command line: `pktpath run | check | validate`.

Errors are handled once, here: a PktpathError becomes one line on stderr and
its exit status (2 bad input, 1 host cannot do it); anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from exporter import __version__
from exporter.errors import ConfigError, PktpathError

if TYPE_CHECKING:
    from exporter.interactive.session import TraceKernel


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse's default prints the whole usage first; one line is enough.
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pktpath", description="Where packets go inside the Linux kernel, and why they die.")
    p.add_argument("--version", action="version", version=f"pktpath {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run the agent: count drops, serve /metrics")
    run.add_argument("-c", "--config", metavar="FILE", help="YAML config (default: built-in defaults)")

    check = sub.add_parser(
        "check",
        help="report what this kernel supports and which hops would attach (exit 0 when drop counting works here)",
    )
    check.add_argument("-c", "--config", metavar="FILE", help="YAML config whose probes: section to apply")
    check.add_argument("--json", action="store_true", help="machine-readable output")

    validate = sub.add_parser("validate", help="check a config file and exit (status 2 if invalid)")
    validate.add_argument("file", metavar="FILE")

    sub.add_parser("shell", help="interactive packet tracer (the linux-packet-tracer commands)")

    trace = sub.add_parser("trace", help="trace packets once and print their paths")
    trace.add_argument("--src", metavar="CIDR", help="source network (default: any)")
    trace.add_argument("--dst", metavar="CIDR", help="destination network (default: any)")
    trace.add_argument("--max-pkt", metavar="N", default="512", help="stop after N packets (1~2048, default 512)")
    trace.add_argument("--max-duration", metavar="S", default="5", help="stop after S seconds (1~60, default 5)")
    trace.add_argument("--json", action="store_true", help="one JSON object per packet per line")
    trace.add_argument(
        "--probe-mode",
        default="auto",
        choices=("auto", "fentry", "kprobe", "tracepoint"),
        help="how probes attach, as config probes.mode (default: auto)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args.config, started)
        if args.command == "check":
            return _check(args.config, args.json)
        if args.command == "validate":
            return _validate(args.file)
        if args.command == "shell":
            from exporter.interactive.session import TraceSession
            from exporter.interactive.shell import run_shell

            return run_shell(TraceSession(_kernel_opener("auto")))
        if args.command == "trace":
            from exporter.interactive.oneshot import run_trace

            return run_trace(
                args.src, args.dst, args.max_pkt, args.max_duration, args.json, _kernel_opener(args.probe_mode)
            )
    except PktpathError as exc:
        print(f"pktpath: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")


def _run(path: str | None, started: float) -> int:
    from exporter import logs
    from exporter.agent import Agent
    from exporter.config import load_config

    cfg = load_config(path)
    logs.setup(cfg.logging.level, cfg.logging.format)
    return Agent(cfg, config_path=path).run(started_at=started)


def _validate(path: str) -> int:
    from exporter.config import load_config

    load_config(path)
    print(f"{path}: ok")
    return 0


def _kernel_opener(probe_mode: str) -> Callable[[], TraceKernel]:
    """Loads and attaches every hop in `probe_mode`, for `pktpath shell` and `pktpath trace`."""

    def open_kernel() -> TraceKernel:
        from exporter.kernel.facade import KernelSide
        from exporter.loader.engine import EngineOptions

        return KernelSide.open(EngineOptions(mode=probe_mode))

    return open_kernel


def _check(path: str | None, as_json: bool) -> int:
    from exporter.config import load_config
    from exporter.loader import libbpf
    from exporter.loader.engine import DROP_HOP, Engine, EngineOptions, features_object_path
    from exporter.loader.host import Host

    cfg = load_config(path)
    # The report says what did not attach and why; the engine's own warnings would repeat it.
    logging.getLogger().setLevel(logging.ERROR)
    host = Host()
    report: dict[str, Any] = {
        "kernel": host.kernel_release(),
        "btf": host.has_btf(),
        "lockdown": host.lockdown() or "unknown (securityfs not mounted)",
        "bpf_privileges": host.can_load_bpf(),
    }
    try:
        report["libbpf"] = libbpf.version()
    except PktpathError as exc:
        report["libbpf"] = f"missing: {exc}"
    report["kernel_features"] = _kernel_features(host)
    report["attach_types"] = {}
    report["hops"] = {}
    ok = False
    try:
        with Engine(EngineOptions(), object_path=features_object_path(), host=host) as features:
            for fam, status in features.start().hops.items():
                report["attach_types"][fam] = "yes" if status.attached else f"no: {status.problems.get(fam, '?')}"
        with Engine(EngineOptions.for_config(cfg, paths=True), host=host) as engine:
            started = engine.start()
            for hop, status in started.hops.items():
                report["hops"][hop] = status.as_dict()
            report["continuations"] = {n: c.as_dict() for n, c in started.continuations.items()}
            # The agent can run where always-on drop counting attaches; other hops add detail
            # where the kernel allows them (function hooks need fentry or kprobes).
            ok = bool(report["hops"].get(DROP_HOP, {}).get("attached"))
    except (PktpathError, ConfigError) as exc:
        report["error"] = str(exc)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_check(report)
    return 0 if ok else 1


def _kernel_features(host: Any) -> dict[str, str]:
    """What this kernel gives and lacks that changes what pktpath can report, in words (from BTF)."""
    from exporter.loader import libbpf

    try:
        btf = libbpf.Btf.parse(host.vmlinux_btf)
    except PktpathError:
        return {}
    with btf:
        helpers = dict(btf.enum("bpf_func_id") or [])
        reasons = btf.enum("skb_drop_reason") is not None
        features = {
            "drop_reasons": "yes" if reasons else "no (before 5.17: no enum skb_drop_reason)",
            "drop_locations": "not needed (the kernel names reasons)"
            if reasons
            else "yes: drops carry `location`, the function that freed the packet, and a reason where it "
            "decides one (docs/kernels.md)",
            "bpf_rdonly_cast": "yes"
            if btf.has_func("bpf_rdonly_cast")
            else "no (6.2+): packet headers are read with bpf_probe_read_kernel",
            "fexit_return_value": "yes"
            if "BPF_FUNC_get_func_ret" in helpers
            else "no (bpf_get_func_ret is 5.17+): verdict hooks (fexit) fall back to kretprobes",
            "sk_data_ready_tracepoint": "yes"
            if btf.has_typedef("btf_trace_sk_data_ready")
            else "no (6.13+): paths of delivered datagrams end at the reader's copy",
        }
    return features


def _print_check(r: dict[str, Any]) -> None:
    rows = [
        ("kernel", r["kernel"]),
        ("btf", "yes" if r["btf"] else "no (/sys/kernel/btf/vmlinux missing)"),
        ("lockdown", r["lockdown"]),
        ("bpf privileges", "yes" if r["bpf_privileges"] else "no (run as root)"),
        ("libbpf", r["libbpf"]),
    ]
    for k, v in rows:
        print(f"{k:<16}{v}")
    if r.get("kernel_features"):
        print("kernel features")
        for k, v in r["kernel_features"].items():
            print(f"  {k:<26}{v}")
    print("attach types")
    for fam, v in r["attach_types"].items():
        print(f"  {fam:<14}{v}")
    print("hops")
    width = max((len(hop) for hop in r["hops"]), default=0) + 2
    for hop, h in r["hops"].items():
        detail = "; ".join(f"{fam}: {st}" for fam, st in h["candidates"].items() if fam != h["attached"])
        print(f"  {hop:<{width}}{h['attached'] or 'NOT ATTACHED'}" + (f"  ({detail})" if detail else ""))
    by_family: dict[str, list[str]] = {}
    for hop, h in r["hops"].items():
        by_family.setdefault(h["attached"] or "not attached", []).append(hop)
    for family in sorted(by_family, key=lambda f: (f == "not attached", f)):
        print(f"{family} ({len(by_family[family])}): {', '.join(by_family[family])}")
    for name, c in r.get("continuations", {}).items():
        # Reached by the drop program's tail call (docs/architecture.md: drop capture).
        print(
            f"{name}: "
            + ("in place (tail call from the drop program)" if c["installed"] else f"NOT IN PLACE: {c['problem']}")
        )
    if "error" in r:
        print(f"error: {r['error']}")


if __name__ == "__main__":
    sys.exit(main())

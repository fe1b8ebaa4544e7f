"""`pktpath trace`: one trace, no prompt; decoded paths (or JSON lines) on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from exporter.errors import ConfigError
from exporter.interactive import render
from exporter.interactive.session import MAX_DURATION_RANGE, MAX_PKT_RANGE, TraceKernel, TraceSession
from exporter.interactive.shell import UsageError, parse_cidr, parse_int, quiet_loader


def run_trace(
    src: str | None,
    dst: str | None,
    max_pkt: str,
    max_duration: str,
    as_json: bool,
    open_kernel: Callable[[], TraceKernel],
) -> int:
    session = TraceSession(open_kernel)
    quiet_loader()
    try:
        # Bad arguments are bad input: exit status 2, before anything is loaded.
        if src:
            session.params.src = parse_cidr(src)
        if dst:
            session.params.dst = parse_cidr(dst)
        session.params.max_pkt = parse_int("--max-pkt", max_pkt, MAX_PKT_RANGE)
        session.params.max_duration = parse_int("--max-duration", max_duration, MAX_DURATION_RANGE)
    except UsageError as exc:
        raise ConfigError(str(exc)) from None
    try:
        session.start()
        # On stderr in both modes, after every probe is attached: the moment to send traffic.
        p = session.params
        print(f"tracing up to {p.max_pkt} packets or {p.max_duration}s ...", file=sys.stderr, flush=True)
        try:
            session.wait()
        except KeyboardInterrupt:
            session.stop()
        modes = session.modes()
        paths = session.result.paths
        for n, path in enumerate(paths, 1):
            if as_json:
                print(json.dumps(render.path_json(n, path, modes, session.shell_context())), flush=True)
            else:
                print(render.render_path(n, path, modes, session.shell_context()), flush=True)
        if not as_json:
            print(
                f"The number of packets we traced is: {len(paths)} (ended by {session.result.ended_by})",
                file=sys.stderr,
            )
    finally:
        session.close()
    return 0

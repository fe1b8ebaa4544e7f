"""Agent memory over a long run with a black-holed OTLP endpoint (issue 13, item 7).

`sudo .venv/bin/python -m bench.soak [--seconds 300] [--rate 200] [--output FILE]`: for gRPC, then
HTTP, one agent samples continuously 1 in 1 the UDP datagrams this process sends from 127.0.0.2 to
127.0.0.1 at `--rate` per second, and exports their spans to a TCP listener that accepts and never
answers (tests/otlp_receiver.py: BlackHole), the worst a collector can do.  Every 30 s: RSS, paths
finished, spans dropped by reason.  Prints one line per sample; writes them all as JSON.
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.agent_process import AgentProcess
from tests.otlp_receiver import BlackHole

STEP_S = 30.0
PORTS = {"grpc": 41901, "http/protobuf": 41902}


def _send(port: int, rate: int, stop: threading.Event) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.2", 0))
        n, t0 = 0, time.monotonic()
        while not stop.is_set():
            s.sendto(n.to_bytes(8, "big"), ("127.0.0.1", port))
            n += 1
            time.sleep(max(0.0, t0 + n / rate - time.monotonic()))


def soak(protocol: str, seconds: float, rate: int) -> list[dict[str, Any]]:
    port = PORTS[protocol]
    rows: list[dict[str, Any]] = []
    with BlackHole() as hole, tempfile.TemporaryDirectory() as tmp:
        agent = AgentProcess.start(
            Path(tmp),
            f'traces:\n  exporter: otlp\n  protocol: {protocol}\n  endpoint: "{hole.endpoint}"\n'
            "sampling:\n  continuous: true\n  one_in: 1\n  drop_one_in: 0\n"
            f"filter:\n  src: [127.0.0.2/32]\n  protocols: [udp]\n  ports: [{port}]\n",
        )
        stop = threading.Event()
        sender = threading.Thread(target=_send, args=(port, rate, stop), daemon=True)
        sender.start()
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < seconds:
                time.sleep(STEP_S)
                scraped = agent.scrape()
                dropped = scraped.get("pktpath_spans_dropped_total", {})
                rows.append(
                    {
                        "t": round(time.monotonic() - t0),
                        "rss_mb": round(agent.value("process_resident_memory_bytes") / 2**20, 1),
                        "paths": sum(scraped.get("pktpath_sampled_paths_total", {}).values()),
                        "spans_dropped": {dict(k)["reason"]: v for k, v in dropped.items()},
                    }
                )
                print(protocol, rows[-1], flush=True)
        finally:
            stop.set()
            sender.join()
            if agent.stop(timeout=15) != 0:
                raise RuntimeError(agent.log())
    return rows


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--rate", type=int, default=200, help="datagrams (paths) per second")
    p.add_argument("--output", type=Path, default=Path("bench/results/soak-latest.json"))
    args = p.parse_args()
    runs = {protocol: soak(protocol, args.seconds, args.rate) for protocol in PORTS}
    args.output.write_text(json.dumps({"seconds": args.seconds, "rate": args.rate, "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()

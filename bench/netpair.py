"""Two network namespaces joined by one veth pair: the smallest path a UDP packet can take between
two network stacks.  No router namespace (unlike tests/kernel/lab.py): forwarding would add a hop
whose cost is not what is being measured.

    tx namespace (pbt<id>) 198.19.<n>.1/30 ---veth--- 198.19.<n>.2/30 (pbr<id>) rx namespace

Addresses are in 198.18.0.0/15 (RFC 2544's benchmark range) and exist only inside these two
namespaces, so no benchmark packet can reach a real network.  IPv6 is off, so neighbour
discovery and MLD add no packets of their own.
"""

from __future__ import annotations

import secrets
from types import TracebackType

from bench.procs import in_netns, run


class NetPair:
    def __init__(self) -> None:
        self.id = secrets.token_hex(3)
        n = secrets.randbelow(64) * 4  # one /30 inside 198.19.0.0/24
        self.tx_ns = f"pktbench-{self.id}-tx"
        self.rx_ns = f"pktbench-{self.id}-rx"
        self.tx_if = f"pbt{self.id}"  # interface names: 15 characters at most
        self.rx_if = f"pbr{self.id}"
        self.tx_ip = f"198.19.0.{n + 1}"
        self.rx_ip = f"198.19.0.{n + 2}"
        self._created: list[str] = []

    @property
    def interfaces(self) -> set[str]:
        return {self.tx_if, self.rx_if}

    def create(self) -> NetPair:
        try:
            for ns in (self.tx_ns, self.rx_ns):
                run(["ip", "netns", "add", ns])
                self._created.append(ns)
                self.exec(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
                self.exec(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
                self.exec(ns, "ip", "link", "set", "lo", "up")
            run(
                [
                    "ip",
                    "link",
                    "add",
                    self.tx_if,
                    "netns",
                    self.tx_ns,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    self.rx_if,
                    "netns",
                    self.rx_ns,
                ]
            )
            for ns, dev, ip in ((self.tx_ns, self.tx_if, self.tx_ip), (self.rx_ns, self.rx_if, self.rx_ip)):
                self.exec(ns, "ip", "addr", "add", f"{ip}/30", "dev", dev)
                self.exec(ns, "ip", "link", "set", dev, "up")
            # Resolve ARP now so the first measured packet is not parked in a neighbour queue.
            self.exec(self.tx_ns, "ping", "-q", "-n", "-c", "1", "-W", "2", self.rx_ip)
        except BaseException:
            self.close()
            raise
        return self

    def exec(self, ns: str, *cmd: str, timeout: float = 30.0, check: bool = True) -> str:
        return run(in_netns(ns, *cmd), timeout=timeout, check=check).stdout

    def close(self) -> None:
        # Deleting a namespace also deletes its end of the veth (and so the pair),
        # and its iptables rules.  Processes inside must be stopped first by their owners.
        for ns in reversed(self._created):
            run(["ip", "netns", "del", ns], check=False, timeout=30)
        self._created.clear()

    def __enter__(self) -> NetPair:
        return self.create()

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self.close()

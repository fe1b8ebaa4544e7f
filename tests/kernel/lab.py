"""A tiny network lab for kernel tests: client -- router -- server namespaces over veth.

    client (cl<id>) ---- (ra<id>) router (rb<id>) ---- (sv<id>) server
    198.18.<n>.2/24      198.18.<n>.1   198.18.<m>.1    198.18.<m>.2/24

Addresses come from 198.18.0.0/15, the range RFC 2544 sets aside for
benchmark labs, and never leave the lab's own namespaces.  Every interface
name carries the lab's random id, so metrics labelled by interface belong to
exactly one test.  IPv6 is off in the lab so router solicitations and MLD
reports add no unrelated drops.  Everything is torn down on close().
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import textwrap
from dataclasses import dataclass


def sh(*cmd: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:  # noqa: A002
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


_SENDER = textwrap.dedent(
    """
    import socket, sys, time
    dst, port, count, size, src = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if src:
        s.bind((src, 0))
    payload = b"p" * size
    for i in range(count):
        s.sendto(payload, (dst, port))
        # Pace the burst: a veth peer's backlog holds 1000 packets per CPU and
        # a drop there (CPU_BACKLOG) would be a different test.
        time.sleep(0.0005)
    """
)


_FRAME_SENDER = textwrap.dedent(
    """
    import socket, sys, time
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((sys.argv[1], 0))
    for line in sys.stdin.read().split():
        s.send(bytes.fromhex(line))
        time.sleep(0.0005)
    """
)


@dataclass
class Lab:
    id: str
    subnet_client: int
    subnet_server: int

    @property
    def client(self) -> str:
        return f"pp-{self.id}-client"

    @property
    def router(self) -> str:
        return f"pp-{self.id}-router"

    @property
    def server(self) -> str:
        return f"pp-{self.id}-server"

    # interface names (15 chars max)
    @property
    def if_client(self) -> str:
        return f"cl{self.id}"

    @property
    def if_router_client(self) -> str:
        return f"ra{self.id}"

    @property
    def if_router_server(self) -> str:
        return f"rb{self.id}"

    @property
    def if_server(self) -> str:
        return f"sv{self.id}"

    @property
    def client_ip(self) -> str:
        return f"198.18.{self.subnet_client}.2"

    @property
    def router_client_ip(self) -> str:
        return f"198.18.{self.subnet_client}.1"

    @property
    def router_server_ip(self) -> str:
        return f"198.18.{self.subnet_server}.1"

    @property
    def server_ip(self) -> str:
        return f"198.18.{self.subnet_server}.2"

    # -- building ----------------------------------------------------------

    # IPv6 (Lab.create(ipv6=True)): 2001:db8::/32, the documentation prefix (RFC 3849).
    @property
    def client_ip6(self) -> str:
        return f"2001:db8:{self.subnet_client:x}::2"

    @property
    def router_client_ip6(self) -> str:
        return f"2001:db8:{self.subnet_client:x}::1"

    @property
    def router_server_ip6(self) -> str:
        return f"2001:db8:{self.subnet_server:x}::1"

    @property
    def server_ip6(self) -> str:
        return f"2001:db8:{self.subnet_server:x}::2"

    @classmethod
    def create(cls, forwarding: bool = True, ipv6: bool = False) -> Lab:
        n = secrets.randbelow(120) * 2 + 2
        lab = cls(id=secrets.token_hex(3), subnet_client=n, subnet_server=n + 1)
        try:
            lab._build(forwarding, ipv6)
        except BaseException:
            lab.close()
            raise
        return lab

    def _build(self, forwarding: bool, ipv6: bool) -> None:
        for ns in (self.client, self.router, self.server):
            sh("ip", "netns", "add", ns)
            # Without IPv6 the lab has no router solicitations or MLD reports: no drops but the test's.
            self.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", int(not ipv6))
            self.sysctl(ns, "net.ipv6.conf.default.disable_ipv6", int(not ipv6))
            self.ip(ns, "link", "set", "lo", "up")
        sh(
            "ip",
            "link",
            "add",
            self.if_client,
            "netns",
            self.client,
            "type",
            "veth",
            "peer",
            "name",
            self.if_router_client,
            "netns",
            self.router,
        )
        sh(
            "ip",
            "link",
            "add",
            self.if_router_server,
            "netns",
            self.router,
            "type",
            "veth",
            "peer",
            "name",
            self.if_server,
            "netns",
            self.server,
        )
        self.ip(self.client, "addr", "add", f"{self.client_ip}/24", "dev", self.if_client)
        self.ip(self.router, "addr", "add", f"{self.router_client_ip}/24", "dev", self.if_router_client)
        self.ip(self.router, "addr", "add", f"{self.router_server_ip}/24", "dev", self.if_router_server)
        self.ip(self.server, "addr", "add", f"{self.server_ip}/24", "dev", self.if_server)
        for ns, dev in (
            (self.client, self.if_client),
            (self.router, self.if_router_client),
            (self.router, self.if_router_server),
            (self.server, self.if_server),
        ):
            self.ip(ns, "link", "set", dev, "up")
        self.ip(self.client, "route", "add", "default", "via", self.router_client_ip)
        self.ip(self.server, "route", "add", "default", "via", self.router_server_ip)
        self.set_forwarding(forwarding)
        if ipv6:
            self._build_ipv6(forwarding)
        # Resolve every neighbour now, so the first test packet is not parked
        # in an ARP queue (or dropped from a full one).  Until the first reply, within 5 s: a veth
        # set up is not yet carrying, and one lost echo must not fail the lab on a busy machine.
        for ns, dst in ((self.client, self.router_client_ip), (self.server, self.router_server_ip)):
            self.exec(ns, "ping", "-q", "-n", "-c", "1", "-i", "0.1", "-w", "5", dst)

    def _build_ipv6(self, forwarding: bool) -> None:
        # nodad: usable at once, not tentative for a second of duplicate address detection.
        for ns, dev, addr in (
            (self.client, self.if_client, self.client_ip6),
            (self.router, self.if_router_client, self.router_client_ip6),
            (self.router, self.if_router_server, self.router_server_ip6),
            (self.server, self.if_server, self.server_ip6),
        ):
            self.ip(ns, "-6", "addr", "add", f"{addr}/64", "dev", dev, "nodad")
        self.ip(self.client, "-6", "route", "add", "default", "via", self.router_client_ip6)
        self.ip(self.server, "-6", "route", "add", "default", "via", self.router_server_ip6)
        self.sysctl(self.router, "net.ipv6.conf.all.forwarding", int(forwarding))
        self.exec(self.client, "ping", "-6", "-q", "-n", "-c", "1", "-W", "2", self.router_client_ip6)
        self.exec(self.server, "ping", "-6", "-q", "-n", "-c", "1", "-W", "2", self.router_server_ip6)

    def mac(self, ns: str, dev: str) -> str:
        out = self.exec(ns, "cat", f"/sys/class/net/{dev}/address").stdout
        return out.strip()

    def send_frames(self, ns: str, dev: str, frames: list[bytes]) -> None:
        """Send whole Ethernet frames, as given, out of `dev` (AF_PACKET): runts, odd headers."""
        self.exec(ns, sys.executable, "-c", _FRAME_SENDER, dev, input="\n".join(f.hex() for f in frames))

    def close(self) -> None:
        for ns in (self.client, self.router, self.server):
            sh("ip", "netns", "del", ns, check=False)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- helpers -----------------------------------------------------------

    def exec(
        self,
        ns: str,
        *cmd: str,
        check: bool = True,
        input: str | None = None,  # noqa: A002
    ) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", ns, *cmd, check=check, input=input)

    def ip(self, ns: str, *args: str) -> None:
        self.exec(ns, "ip", *args)

    def sysctl(self, ns: str, key: str, value: int) -> None:
        self.exec(ns, "sysctl", "-qw", f"{key}={value}")

    def set_forwarding(self, on: bool) -> None:
        self.sysctl(self.router, "net.ipv4.ip_forward", int(on))

    def spoof_for_rp_filter(self) -> str:
        """A source address on the client the router has no route back to, with strict rp_filter
        on the router's client side: a datagram sent from it fails the router's rp_filter check
        (IP_RPFILTER).  Returns the address, for send_udp(src=...)."""
        spoofed = f"198.19.{self.subnet_client}.5"
        self.ip(self.client, "addr", "add", f"{spoofed}/32", "dev", self.if_client)
        self.sysctl(self.router, "net.ipv4.conf.all.rp_filter", 1)
        self.sysctl(self.router, f"net.ipv4.conf.{self.if_router_client}.rp_filter", 1)
        return spoofed

    def ping(self, ns: str, dst: str, count: int = 1, check: bool = True) -> None:
        self.exec(ns, "ping", "-q", "-n", "-c", str(count), "-i", "0.01", "-W", "1", dst, check=check)

    def send_udp(
        self, ns: str, dst: str, port: int, count: int, size: int = 100, src: str = "", cpu: int | None = None
    ) -> None:
        """Send `count` UDP datagrams of `size` payload bytes from namespace `ns` (pinned to `cpu`)."""
        pin = ("taskset", "-c", str(cpu)) if cpu is not None else ()
        self.exec(ns, *pin, sys.executable, "-c", _SENDER, dst, str(port), str(count), str(size), src)

    def nft(self, ns: str, script: str) -> None:
        self.exec(ns, "nft", "-f", "-", input=script)

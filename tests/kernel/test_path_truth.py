"""A path shows exactly one packet, only its own bytes, and names what the kernel did.

Each test builds real traffic in lab namespaces, runs the agent as a user runs it (one_in 1, so
every matching packet is followed) and reads what a real OTLP receiver got: no packet merged into
another's path, no byte from past a packet's end, no reply's route lookup among a packet's hops,
every route result named, IPv6 first class, and the agent never in its own traces.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess, wait_until
from tests.kernel.lab import Lab
from tests.kernel.test_paths import hop_names, traces_to, traces_yaml, udp_listener
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

N = 10


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def start_agent(tmp: Path, receiver: OtlpReceiver, extra: str = "") -> AgentProcess:
    return AgentProcess.start(tmp, traces_yaml(receiver.grpc_endpoint) + extra)


def roots(receiver: OtlpReceiver, **attrs: object) -> list[ReceivedSpan]:
    return [
        s for s in receiver.spans if not s.parent_span_id and all(s.attributes.get(k) == v for k, v in attrs.items())
    ]


def children(receiver: OtlpReceiver, root: ReceivedSpan) -> list[ReceivedSpan]:
    spans = [s for s in receiver.spans if s.trace_id == root.trace_id and s.parent_span_id]
    return sorted(spans, key=lambda s: s.start_ns)


def refused_connects(lab: Lab, ns: str, dst: str, port: int, count: int) -> None:
    """`count` TCP connection attempts, each from its own source port, each refused with a reset."""
    lab.exec(
        ns,
        sys.executable,
        "-c",
        "import socket, sys, time\n"
        f"for _ in range({count}):\n"
        "    s = socket.socket()\n"
        "    s.settimeout(2)\n"
        f"    assert s.connect_ex(('{dst}', {port})) == 111, 'not refused'\n"
        "    s.close()\n"
        "    time.sleep(0.01)\n",
    )


@pytest.mark.parametrize("where", ["closed_port", "nft_reject_in_forward"])
def test_n_resets_give_n_paths(tmp_path: Path, receiver: OtlpReceiver, lab: Lab, where: str) -> None:
    """An RST that answers a SYN is freed where no hop sees it (tcp_rcv_synsent_state_process), and
    the next RST -- sequence 0, IP id 0, length 40 like every such RST -- reuses its skb.  Each must
    still be its own path: told apart by its ports, not merged into the last one."""
    port = 7161 if where == "closed_port" else 7162
    if where == "nft_reject_in_forward":
        lab.nft(
            lab.router,
            "table inet t {\n  chain forward_chain {\n    type filter hook forward priority 0;\n"
            f"    tcp dport {port} reject with tcp reset\n  }}\n}}\n",
        )
    agent = start_agent(tmp_path, receiver, f"filter:\n  dst: [{lab.client_ip}/32]\n  protocols: [tcp]\n")
    try:
        refused_connects(lab, lab.client, lab.server_ip, port, N)
        resets = lambda: roots(receiver, **{"source.port": port, "pktpath.tcp.flags": "RST|ACK"})  # noqa: E731
        assert wait_until(lambda: len(resets()) >= N, 10), [r.name for r in resets()]
        time.sleep(0.5)
        got = resets()
        assert len(got) == N, [r.name for r in got]
        assert len({r.attributes["destination.port"] for r in got}) == N  # N connection attempts, N ports
        assert len({r.trace_id for r in got}) == N
        queued = 1 if where == "nft_reject_in_forward" else 2  # by the router only, or by server and router
        for root in got:
            names = hop_names(children(receiver, root))
            # One RST each: it leaves once per namespace it crosses and arrives at the client once,
            # where its socket consumes it.
            assert len([n for n in names if n.startswith("net_dev_queue")]) == queued, names
            assert names.count(f"netif_receive_skb({lab.if_client})") == 1, names
        assert agent.value("pktpath_paths_evicted_total", reason="too_many_hops") == 0
    finally:
        assert agent.stop() == 0, agent.log()


def test_runt_and_truncated_frames_show_only_their_own_bytes(tmp_path: Path, receiver: OtlpReceiver, lab: Lab) -> None:
    """Frames whose IPv4/IPv6 header is cut short, sent while loopback traffic fills the kernel's
    buffers with other packets' headers: each is counted and traced as truncated, with one
    protocol label and no addresses, never with bytes from past its end."""
    dst_mac = bytes.fromhex(lab.mac(lab.router, lab.if_router_client).replace(":", ""))
    src_mac = bytes.fromhex(lab.mac(lab.client, lab.if_client).replace(":", ""))
    eth4, eth6 = dst_mac + src_mac + b"\x08\x00", dst_mac + src_mac + b"\x86\xdd"
    frames = (
        [eth4] * N  # Ethernet header only
        + [eth4 + bytes.fromhex("45000054abcd4000")] * N  # 8 of the IPv4 header's 20 bytes
        + [eth6 + bytes(20)] * N
    )  # 20 of the IPv6 header's 40
    agent = start_agent(tmp_path, receiver, f"filter:\n  interfaces: [{lab.if_router_client}]\n")
    noise = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, time\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "end = time.monotonic() + 4\n"
            "while time.monotonic() < end: s.sendto(b'L' * 200, ('127.0.0.1', 9))\n",
        ]
    )
    try:
        time.sleep(0.3)
        lab.send_frames(lab.client, lab.if_client, frames)
        noise.wait()

        def drops() -> dict[str, float]:  # by protocol, summed over reasons (IP_INHDR, IPV6DISABLED)
            out: dict[str, float] = {}
            for lbl, v in _series(agent, "pktpath_drops_total", interface=lab.if_router_client).items():
                out[dict(lbl)["protocol"]] = out.get(dict(lbl)["protocol"], 0.0) + v
            return out

        assert wait_until(lambda: sum(drops().values()) >= len(frames), 5), drops()
        assert drops() == {"truncated": float(len(frames))}
        assert wait_until(lambda: len(roots(receiver, **{"pktpath.ip.truncated": True})) >= len(frames), 10)
        traced = roots(receiver, **{"pktpath.ip.truncated": True})
        assert len(traced) == len(frames)
        assert {r.name for r in traced} == {
            "IPv4 header cut short (0 bytes)",
            "IPv4 header cut short (8 bytes)",
            "IPv6 header cut short (20 bytes)",
        }
        for root in traced:
            assert "source.address" not in root.attributes and "destination.address" not in root.attributes
            assert root.attributes["pktpath.ip.protocol"] == "truncated"
        # Nothing anywhere shows the loopback traffic that shared the buffers.
        assert not [
            s
            for s in receiver.spans
            if "127.0.0.1" in (s.attributes.get("source.address"), s.attributes.get("destination.address"))
        ]
    finally:
        noise.kill()
        noise.wait()
        assert agent.stop() == 0, agent.log()


def _series(agent: AgentProcess, name: str, **match: str) -> dict[frozenset[tuple[str, str]], float]:
    out = {}
    for labels, value in agent.scrape().get(name, {}).items():
        d = dict(labels)
        if all(d.get(k) == v for k, v in match.items()):
            out[frozenset(d.items())] = value
    return {k: v for k, v in out.items()}


def fib_hops(spans: list[ReceivedSpan]) -> list[str]:
    return [n for n in hop_names(spans) if n.startswith(("fib lookup", "rp_filter check"))]


def test_a_drop_shows_only_its_own_route_lookups(tmp_path: Path, receiver: OtlpReceiver, lab: Lab) -> None:
    """The kernel's reply to a packet (ICMP unreachable, time exceeded, fragmentation needed, a TCP
    reset) makes route lookups of its own on the same CPU; they are not the packet's hops.  Each
    case: one lookup per namespace that routed the packet, none more."""
    agent = start_agent(tmp_path, receiver, "filter:\n  dst: [198.18.0.0/15, 198.19.0.0/16]\n")
    lab.ip(lab.router, "link", "set", lab.if_router_server, "mtu", "1000")
    try:
        cases = []
        # No route at the router: it answers ICMP net unreachable.
        lab.send_udp(lab.client, f"198.19.{lab.subnet_client}.9", 7171, 1)
        cases.append((7171, ["fib lookup (table main, no route)"]))
        # A closed UDP port at the server: ICMP port unreachable.
        lab.send_udp(lab.client, lab.server_ip, 7172, 1)
        # Without policy rules the local table's routes live in main's trie (fib_trie's merged tables).
        cases.append(
            (
                7172,
                [
                    f"fib lookup (table main, found -> {lab.if_router_server})",
                    f"fib lookup (table main, found -> {lab.if_server})",
                ],
            )
        )
        # TTL 1 at the router: ICMP time exceeded.
        lab.exec(
            lab.client,
            sys.executable,
            "-c",
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)\n"
            f"s.sendto(b'x' * 20, ('{lab.server_ip}', 7173))\n",
        )
        cases.append((7173, [f"fib lookup (table main, found -> {lab.if_router_server})"]))
        # Don't fragment, too big for the router's egress: ICMP fragmentation needed.
        lab.exec(
            lab.client,
            sys.executable,
            "-c",
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.setsockopt(socket.IPPROTO_IP, 10, 2)\n"  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
            f"s.sendto(b'x' * 1200, ('{lab.server_ip}', 7174))\n",
        )
        cases.append((7174, [f"fib lookup (table main, found -> {lab.if_router_server})"]))
        # A SYN to a closed TCP port: answered with a reset.
        refused_connects(lab, lab.client, lab.server_ip, 7175, 1)
        cases.append(
            (
                7175,
                [
                    f"fib lookup (table main, found -> {lab.if_router_server})",
                    f"fib lookup (table main, found -> {lab.if_server})",
                ],
            )
        )
        for port, expected in cases:
            ((_, spans),) = traces_to(receiver, port).items()
            assert fib_hops(spans) == expected, (port, hop_names(spans))
            assert spans[0].attributes["pktpath.outcome"] == "dropped", (port, hop_names(spans))
    finally:
        assert agent.stop() == 0, agent.log()


@pytest.mark.parametrize("kind", ["blackhole", "unreachable", "prohibit"])
def test_route_types_are_named(tmp_path: Path, receiver: OtlpReceiver, lab: Lab, kind: str) -> None:
    """A blackhole, unreachable or prohibit route is named in the path: for a blackhole the kernel's
    drop reason (NOT_SPECIFIED at ip_error) says nothing, so the path is where a user learns it."""
    port = {"blackhole": 7181, "unreachable": 7182, "prohibit": 7183}[kind]
    net = f"198.19.{lab.subnet_server}.0/24"
    lab.ip(lab.router, "route", "add", kind, net)
    agent = start_agent(tmp_path, receiver, "filter:\n  dst: [198.19.0.0/16]\n")
    try:
        lab.send_udp(lab.client, f"198.19.{lab.subnet_server}.7", port, 1)
        ((_, spans),) = traces_to(receiver, port).items()
        assert fib_hops(spans) == [f"fib lookup (table main, {kind})"], hop_names(spans)
        lookup = next(s for s in spans if s.name.startswith("fib lookup"))
        assert lookup.attributes["pktpath.fib.result"] == kind
        assert spans[0].attributes["pktpath.outcome"] == "dropped"
    finally:
        assert agent.stop() == 0, agent.log()


def test_rp_filter_is_named_in_spans(tmp_path: Path, receiver: OtlpReceiver, lab: Lab) -> None:
    """rp_filter's reverse lookup says rp_filter, in the shell's words, not "fib lookup (no route)"."""
    spoofed = lab.spoof_for_rp_filter()
    agent = start_agent(tmp_path, receiver, "filter:\n  dst: [198.18.0.0/15]\n")
    try:
        lab.send_udp(lab.client, lab.server_ip, 7185, 1, src=spoofed)
        ((_, spans),) = traces_to(receiver, 7185).items()
        assert fib_hops(spans) == [
            f"fib lookup (table main, found -> {lab.if_router_server})",
            "rp_filter check: FAIL (no route back to the source, table main)",
        ], hop_names(spans)
        assert hop_names(spans)[-1] == "DROPPED: IP_RPFILTER"
    finally:
        assert agent.stop() == 0, agent.log()


def test_ipv6_no_route_path_has_its_lookup(tmp_path: Path, receiver: OtlpReceiver, lab6: Lab) -> None:
    agent = start_agent(tmp_path, receiver, "filter:\n  dst: [2001:db8::/32]\n  protocols: [udp]\n")
    try:
        lab6.exec(
            lab6.client,
            sys.executable,
            "-c",
            "import socket\ns = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
            "s.sendto(b'x' * 20, ('2001:db8:ffff::9', 7186))\n",
        )
        ((_, spans),) = traces_to(receiver, 7186).items()
        lookups = fib_hops(spans)
        assert lookups and lookups[-1] == "fib lookup (table main, no route)", hop_names(spans)
        assert hop_names(spans)[-1] == "DROPPED: IP_INNOROUTES", hop_names(spans)
    finally:
        assert agent.stop() == 0, agent.log()


def _ipv6_udp(src: str, dst: str, sport: int, dport: int, ext: bytes, first_next: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    # Checksum over the pseudo-header (RFC 8200 8.1): UDP over IPv6 requires one.
    pseudo = (
        socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + struct.pack("!I3xB", len(udp) + len(payload), 17)
    )
    data = pseudo + udp + payload
    total = sum(struct.unpack(f"!{len(data) // 2}H", data + b"\0" * (len(data) % 2)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    udp = udp[:6] + struct.pack("!H", ~total & 0xFFFF or 0xFFFF)
    body = ext + udp + payload
    return (
        struct.pack("!IHBB", 6 << 28, len(body), first_next, 64)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + body
    )


# Each extension header, 8 bytes, whose next header is UDP (17).
EXTENSION_HEADERS = {
    "hop-by-hop": (0, bytes([17, 0, 1, 4, 0, 0, 0, 0])),  # a PadN option
    "destination options": (60, bytes([17, 0, 1, 4, 0, 0, 0, 0])),
    "routing": (43, bytes([17, 0, 0, 0, 0, 0, 0, 0])),  # segments left 0: ignored (RFC 8200 4.4)
    "fragment": (44, bytes([17, 0, 0, 0, 0, 0, 0, 7])),  # an atomic fragment (RFC 6946)
}


@pytest.mark.parametrize("ext", list(EXTENSION_HEADERS))
def test_udp_behind_an_ipv6_extension_header_keeps_its_ports(
    tmp_path: Path, receiver: OtlpReceiver, lab6: Lab, ext: str
) -> None:
    port = 7190 + list(EXTENSION_HEADERS).index(ext)
    first, header = EXTENSION_HEADERS[ext]
    agent = start_agent(tmp_path, receiver, f"filter:\n  protocols: [udp]\n  ports: [{port}]\n")
    try:
        dst_mac = bytes.fromhex(lab6.mac(lab6.router, lab6.if_router_client).replace(":", ""))
        src_mac = bytes.fromhex(lab6.mac(lab6.client, lab6.if_client).replace(":", ""))
        # Payloads differ, so the three are three packets (and three traces), not one sent thrice.
        packets = [
            _ipv6_udp(lab6.client_ip6, lab6.server_ip6, 40000 + port, port, header, first, f"{i} datagram".encode())
            for i in range(3)
        ]
        lab6.send_frames(lab6.client, lab6.if_client, [dst_mac + src_mac + b"\x86\xdd" + p for p in packets])
        traces = traces_to(receiver, port, count=3)
        assert len(traces) == 3
        for spans in traces.values():
            root = spans[0]
            assert root.attributes["pktpath.ip.protocol"] == "udp", root.attributes
            assert (root.attributes["source.port"], root.attributes["destination.port"]) == (40000 + port, port)
            assert root.name == f"UDP [{lab6.client_ip6}]:{40000 + port} -> [{lab6.server_ip6}]:{port}"
        # Nobody listens: the server drops each, and the counters call them udp too.
        assert (
            agent.wait_value("pktpath_drops_total", 3, interface=lab6.if_server, protocol="udp", reason="NO_SOCKET")
            == 3
        )
    finally:
        assert agent.stop() == 0, agent.log()


def test_the_agent_never_follows_its_own_connections(tmp_path: Path, receiver: OtlpReceiver, lab: Lab) -> None:
    """With no filter and one_in 1 the agent would follow everything, its own OTLP export and the
    scrapes of its /metrics included.  It follows neither, and a scrape adds no drop."""
    # Loopback, where the agent's own connections run, and the lab's router for a control: on a
    # shared machine other people's traffic elsewhere must not spend the budget.
    agent = AgentProcess.start(
        tmp_path,
        traces_yaml(receiver.grpc_endpoint).replace("max_paths_per_second: 0", "max_paths_per_second: 5000")
        + f"filter:\n  interfaces: [lo, {lab.if_router_client}]\n  protocols: [tcp, udp]\n",
    )
    try:
        for _ in range(20):
            agent.scrape_text()
            time.sleep(0.05)
        # A control: lab traffic is followed, so spans (and export connections) were flowing.
        listener = udp_listener(lab, 7199, 1)
        lab.send_udp(lab.client, lab.server_ip, 7199, 1)
        listener.wait()
        traces_to(receiver, 7199)
        time.sleep(1.5)  # several export batches
        grpc_port = int(receiver.grpc_endpoint.rsplit(":", 1)[1])
        own = [
            (s.name, s.attributes.get("pktpath.sampled_by"), hop_names(children(receiver, s)))
            for s in receiver.spans
            if not s.parent_span_id
            and {s.attributes.get("source.port"), s.attributes.get("destination.port")} & {grpc_port, agent.port}
        ]
        assert own == []
        assert _series(agent, "pktpath_drops_total", interface="lo", reason="QUEUE_PURGE") == {}
    finally:
        assert agent.stop() == 0, agent.log()


def test_fragments_of_a_timed_out_reassembly_name_their_interface(tmp_path: Path, lab: Lab) -> None:
    """ip_expire() gives a device back only to the first fragment; the others of the queue are
    counted under that device too, not under a bare interface index."""
    lab.sysctl(lab.server, "net.ipv4.ipfrag_time", 1)
    agent = AgentProcess.start(tmp_path)
    try:
        lab.exec(lab.client, sys.executable, "-c", _FRAGMENTS, lab.client_ip, lab.server_ip, str(N))
        labels = {"reason": "FRAG_REASM_TIMEOUT", "protocol": "udp"}
        assert wait_until(lambda: sum(_series(agent, "pktpath_drops_total", **labels).values()) >= 2 * N, 10)
        time.sleep(0.2)
        series = _series(agent, "pktpath_drops_total", **labels)
        assert {dict(k)["interface"]: v for k, v in series.items()} == {lab.if_server: 2.0 * N}
    finally:
        assert agent.stop() == 0, agent.log()


# `count` UDP datagrams sent as two of their three fragments (the first and the second): the server
# holds them until its reassembly times out, then frees both.
_FRAGMENTS = """
import socket, struct, sys
src, dst, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
def iph(ident, offset, more, length):
    flags = (offset // 8) | (0x2000 if more else 0)
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + length, ident, flags, 64, 17, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    s = sum(struct.unpack('!10H', h))
    s = (s & 0xffff) + (s >> 16)
    return h[:10] + struct.pack('!H', ~s & 0xffff) + h[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(count):
    first = struct.pack('!HHHH', 5000, 6000, 8 + 40, 0) + b'a' * 16
    s.sendto(iph(4000 + i, 0, True, len(first)) + first, (dst, 0))
    s.sendto(iph(4000 + i, 24, True, 16) + b'b' * 16, (dst, 0))
"""

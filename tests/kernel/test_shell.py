"""The interactive tracer driven through a real pty, as a person types at it, against a kernel lab."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pexpect
import pytest

from tests.agent_process import loaded_program_ids, pktpath_bin, program_ids_of, wait_until
from tests.kernel.lab import Lab

PROMPT = ">>> "


class Shell:
    def __init__(self) -> None:
        self.child = pexpect.spawn(
            pktpath_bin(),
            ["shell"],
            encoding="utf-8",
            timeout=30,
            echo=False,
            env={"HOME": "/tmp", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "dumb"},
        )
        self.child.expect(PROMPT)
        self.banner = self.child.before

    def run(self, line: str, timeout: float = 30) -> str:
        """Type a line; return what the shell printed before the next prompt."""
        self.child.sendline(line)
        self.child.expect(PROMPT, timeout=timeout)
        return str(self.child.before).replace("\r\n", "\n").strip()

    def close(self) -> None:
        if self.child.isalive():
            self.child.sendeof()
            self.child.expect(pexpect.EOF, timeout=30)
        self.child.close()


@pytest.fixture
def shell() -> Iterator[Shell]:
    sh = Shell()
    yield sh
    sh.close()


def test_session_with_known_traffic(shell: Shell, lab: Lab) -> None:
    assert shell.banner.strip() == "Welcome to Packet Tracing for Linux"  # no kernel noise before the prompt
    config = shell.run("show config")
    assert "match rules:\n    dst: 0.0.0.0/0, src: 0.0.0.0/0" in config
    assert "max packets: 512" in config and "max duration: 5s" in config

    assert shell.run(f"dst {lab.server_ip}/32") == f"dst: {lab.server_ip}/32"
    shell.run("max_duration 6")
    assert shell.run("start").startswith("tracing started")

    # 1: delivered; 2: dropped by iptables; 3: rp_filter failure; then dst changed live, 4: route miss.
    listener = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lab.server,
            sys.executable,
            "-c",
            f"import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{lab.server_ip}',7201))\n"
            "print('ready',flush=True)\ns.recv(2048)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
    lab.send_udp(lab.client, lab.server_ip, 7201, 1)
    listener.wait(timeout=10)
    lab.exec(lab.server, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "7202", "-j", "DROP")
    lab.send_udp(lab.client, lab.server_ip, 7202, 1)
    spoofed = lab.spoof_for_rp_filter()
    lab.send_udp(lab.client, lab.server_ip, 7203, 1, src=spoofed)
    assert "applied to the running trace" in shell.run("dst 198.19.255.0/24")
    lab.send_udp(lab.client, "198.19.255.1", 7204, 1)

    assert shell.run("wait").startswith("tracing ended (max_duration): 4 packets")
    summary = shell.run("show summary")
    assert summary.startswith("The number of packets we traced is: 4")
    for reason in ("NETFILTER_DROP: 1", "IP_RPFILTER: 1", "IP_INNOROUTES: 1"):
        assert reason in summary

    delivered = shell.run("show 1")
    assert delivered.startswith(f"packet 1: UDP {lab.client_ip}:")
    assert (
        f"0,tracepoint net_dev_queue({lab.if_client}):\n    {lab.client_ip}->{lab.server_ip}, tos:0x0, "
        f"ttl:64, protocol:UDP(0x11), total_len:128" in delivered
    )
    assert f"tracepoint netif_receive_skb({lab.if_router_client}):\n    received on {lab.if_router_client}" in delivered
    assert (
        f"ip route lookup: dst({lab.server_ip}), src({lab.client_ip}), iif({lab.if_router_client}), "
        f"found route -> {lab.if_router_server} (table main)" in delivered
    )
    assert "Dropped" not in delivered

    dropped = shell.run("show 2")
    assert f"tracepoint kfree_skb({lab.if_server}):\n    Dropped: NETFILTER_DROP at nft_do_chain+0x" in dropped

    rpf = shell.run("show 3")
    assert f"rp_filter check: src({spoofed}), iif({lab.if_router_client}), FAIL" in rpf
    assert "Dropped: IP_RPFILTER at " in rpf

    miss = shell.run("show 4")
    assert f"ip route lookup: dst(198.19.255.1), src({lab.client_ip}), iif({lab.if_router_client}), no route" in miss
    assert "Dropped: IP_INNOROUTES at " in miss

    everything = shell.run("show")
    assert [ln.split(":")[0] for ln in everything.splitlines() if ln.startswith("packet ")] == [
        "packet 1",
        "packet 2",
        "packet 3",
        "packet 4",
    ]
    modes = shell.run("show config")
    assert "probe modes:\n    kfree_skb: tracepoint" in modes


def test_max_pkt_stops_the_trace(shell: Shell, lab: Lab) -> None:
    shell.run(f"dst {lab.server_ip}/32")
    shell.run("max_pkt 3")
    shell.run("max_duration 30")
    shell.run("start")
    lab.send_udp(lab.client, lab.server_ip, 7210, 10)
    assert shell.run("wait").startswith("tracing ended (max_pkt): 3 packets")
    assert shell.run("show summary").startswith("The number of packets we traced is: 3")


def test_max_duration_stops_the_trace_and_restart_runs_again(shell: Shell, lab: Lab) -> None:
    shell.run(f"src {lab.client_ip}/32")
    shell.run("max_duration 1")
    shell.run("start")
    assert shell.run("wait") == "tracing ended (max_duration): 0 packets"
    assert shell.run("restart").startswith("tracing restarted")
    lab.send_udp(lab.client, lab.server_ip, 7211, 2)
    assert shell.run("wait") == "tracing ended (max_duration): 2 packets"


def test_bad_input_gets_one_line_and_the_shell_goes_on(shell: Shell) -> None:
    errors = {
        "src 10.0.0.0/33": "error: bad CIDR '10.0.0.0/33': expected an address or network like 1.2.3.0/24",
        "dst 10.0.0.1/24": "error: 10.0.0.1/24 has host bits set; did you mean 10.0.0.0/24?",
        "max_pkt 0": "error: max_pkt: 0 is out of range (1~2048)",
        "max_pkt 2049": "error: max_pkt: 2049 is out of range (1~2048)",
        "max_pkt lots": "error: max_pkt: 'lots' is not a number (1~2048)",
        "max_duration 61": "error: max_duration: 61 is out of range (1~60)",
        "debug loud": "error: debug: expected one of debug, info, warn, error, got 'loud'",
        "show 1": "error: show: no packet 1 (traced: 0)",
        "show everything": "error: show: expected config, summary or a packet number, got 'everything'",
        "frobnicate": "error: unknown command 'frobnicate' (type help)",
        "wait": "no trace is running",
    }
    for line, expected in errors.items():
        assert shell.run(line) == expected, line
    assert shell.run("src 2001:db8::/32") == "src: 2001:db8::/32"  # IPv6 CIDRs too
    assert shell.run("max_pkt 2048") == "max packets: 2048"
    assert shell.run("debug warn") == "debug level: warn"
    assert "max_duration      set max seconds to keep tracing, (1~60)" in shell.run("help")


def test_exit_detaches_everything(shell: Shell) -> None:
    shell.run("max_duration 1")
    shell.run("start")
    ours = program_ids_of(shell.child.pid)
    assert ours and ours <= loaded_program_ids()
    shell.child.sendline("exit")
    shell.child.expect("all probes detached")
    shell.child.expect(pexpect.EOF)
    shell.child.close()
    assert shell.child.exitstatus == 0
    assert wait_until(lambda: not ours & loaded_program_ids())


def test_trace_json_one_packet_per_line(lab: Lab) -> None:
    lab.exec(lab.server, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "7220", "-j", "DROP")
    proc = subprocess.Popen(
        [pktpath_bin(), "trace", "--dst", f"{lab.server_ip}/32", "--max-pkt", "3", "--max-duration", "20", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Ready once it says so on stderr (after attaching); then send.
        assert proc.stderr is not None and proc.stderr.readline().startswith("tracing up to 3 packets")
        lab.send_udp(lab.client, lab.server_ip, 7220, 3)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    packets = [json.loads(line) for line in out.splitlines()]
    assert [p["packet"] for p in packets] == [1, 2, 3]
    for p in packets:
        assert (p["src"], p["dst"], p["protocol"], p["dport"]) == (lab.client_ip, lab.server_ip, "udp", 7220)
        assert p["outcome"] == "dropped" and p["drop_reason"] == "NETFILTER_DROP"
        assert p["hops"][0]["hop"] == "net_dev_queue" and p["hops"][0]["interface"] == lab.if_client
        assert p["hops"][-1]["hop"] == "kfree_skb" and p["hops"][-1]["detail"].startswith(
            "Dropped: NETFILTER_DROP at nft_do_chain+0x"
        )


def test_trace_bad_argument_is_one_line_exit_2() -> None:
    proc = subprocess.run([pktpath_bin(), "trace", "--max-pkt", "5000"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr == "pktpath: --max-pkt: 5000 is out of range (1~2048)\n"

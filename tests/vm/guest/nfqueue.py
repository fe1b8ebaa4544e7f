"""A minimal NFQUEUE reader that accepts every packet, over raw netlink (no libnetfilter_queue).

Run as a script in a network namespace: `python -m tests.vm.guest.nfqueue QUEUE COUNT`.  It binds
queue QUEUE, prints "ready", then gives NF_ACCEPT to COUNT packets and exits.  The kernel then
reinjects each packet through the hook state's okfn: the one way ip_rcv_finish's out-of-line copy
runs on kernels that inline its direct call (docs/kernels.md).
"""

from __future__ import annotations

import socket
import struct
import sys

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NF_ACCEPT = 1


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _message(msg: int, queue: int, attrs: bytes, seq: int) -> bytes:
    body = struct.pack("=BBH", socket.AF_INET, 0, socket.htons(queue)) + attrs  # struct nfgenmsg
    return (
        struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body
    )


def _packet_ids(data: bytes) -> list[int]:
    ids = []
    while len(data) >= 16:
        length, kind = struct.unpack_from("=IH", data)
        if kind == 2:  # NLMSG_ERROR: an ack (error 0) or a refusal
            (err,) = struct.unpack_from("=i", data, 16)
            if err:
                raise OSError(-err, "nfqueue config refused")
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            off = 20  # nlmsghdr + nfgenmsg
            while off + 4 <= length:
                alen, atype = struct.unpack_from("=HH", data, off)
                if atype & 0x7FFF == NFQA_PACKET_HDR:
                    ids.append(struct.unpack_from("!I", data, off + 4)[0])
                off += (alen + 3) & ~3
        data = data[(length + 3) & ~3 :]
    return ids


def main(queue: int, count: int) -> None:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    sock.send(_message(NFQNL_MSG_CONFIG, queue, _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)), 1))
    _packet_ids(sock.recv(65536))
    params = struct.pack("!IB", 0xFFFF, NFQNL_COPY_META)  # struct nfqnl_msg_config_params (packed)
    sock.send(_message(NFQNL_MSG_CONFIG, queue, _attr(NFQA_CFG_PARAMS, params), 2))
    _packet_ids(sock.recv(65536))
    print("ready", flush=True)
    done, seq = 0, 3
    # The caller sends only once its `pktpath trace` has loaded, which under emulation with other
    # VMs on the machine can take a minute; the queue must still be bound by then (a queue with
    # no reader drops the packet in nf_queue).
    sock.settimeout(180)
    while done < count:
        for packet_id in _packet_ids(sock.recv(65536)):
            verdict = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))
            sock.send(_message(NFQNL_MSG_VERDICT, queue, verdict, seq))
            seq += 1
            done += 1


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))

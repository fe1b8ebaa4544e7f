"""The /metrics listening socket, bound before anything is loaded into the kernel.

A busy or unusable `metrics.listen` address is a host problem found in the first milliseconds:
one line naming the key, the address and the kernel's reason, exit status 1, and no probe ever
attached (it used to be a 31-line wsgiref traceback after 170 ms of attached probes).  The HTTP
server (server.py, which imports prometheus_client and wsgiref, ~60 ms) adopts this socket later;
connections that arrive meanwhile wait in the listen queue.
"""

from __future__ import annotations

import socket

from exporter.errors import KernelError

# Pending connections the kernel queues before the server accepts them.  The socketserver default
# of 5 overflowed under 20 concurrent scrapers (TcpExtListenOverflows), and every overflow is a
# client's SYN retried after 1 s, then 3 s: p99 1.07 s.  The kernel caps it at net.core.somaxconn.
BACKLOG = 128


def bind_listener(host: str, port: int, listen: str) -> socket.socket:
    """A listening TCP socket on host:port (an IPv6 host when it contains ':'); KernelError if not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # A restarted agent must not wait out the old one's TIME_WAIT connections.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise KernelError(f"metrics.listen: cannot listen on {listen}: {reason}") from exc
    sock.set_inheritable(False)
    return sock

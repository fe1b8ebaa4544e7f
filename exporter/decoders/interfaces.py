"""Interface index -> name, per network namespace, with a bounded TTL cache.

Used for what the kernel could not name itself: drops of skbs that no longer
have a device (only their ingress ifindex), and hop events.  Namespace inodes
and ifindexes are recycled, so an answer is trusted for a short TTL only.

The kernel reports (netns inode, ifindex); ifindex is only unique inside its
namespace, so the name must be asked *in* that namespace.  A namespace is
reached through any file that refers to it: a bind mount under /run/netns
(`ip netns add`, CNI plugins) or /proc/<pid>/ns/net of a process living there
(containers).  The lookup runs in a short-lived thread that setns()es into the
namespace, so the agent's own threads never change namespace.

Misses are resolved in one batch per scrape, one thread per namespace; hits
cost a dict lookup.  Names of deleted namespaces stay in the cache until their
TTL expires, so a pod's last drops still carry its interface name.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
NO_DEVICE = "none"

Key = tuple[int, int]  # (netns inode, ifindex)
Lister = Callable[[str | None], dict[int, str]]


def unresolved_label(ifindex: int) -> str:
    return f"ifindex:{ifindex}"


def list_links_in(ns_path: str | None) -> dict[int, str]:
    """{ifindex: name} of the namespace at ns_path (None: the caller's own)."""
    if ns_path is None:
        return dict(socket.if_nameindex())
    result: dict[int, str] = {}
    error: list[BaseException] = []

    def work() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), ns_path)
            finally:
                os.close(fd)
            # if_nameindex opens its netlink socket now, inside the namespace.
            result.update(socket.if_nameindex())
        except BaseException as exc:  # noqa: BLE001 - reported to the caller's thread
            error.append(exc)

    # The thread ends after the lookup, taking its namespace with it.
    t = threading.Thread(target=work, name="pktpath-netns", daemon=True)
    t.start()
    t.join(timeout=2.0)
    if error:
        raise error[0]
    return result


class InterfaceResolver:
    def __init__(
        self,
        proc_root: str = "/proc",
        netns_dirs: Iterable[str] = ("/run/netns", "/var/run/netns"),
        lister: Lister = list_links_in,
        ttl_seconds: float = 10.0,
        max_entries: int = 8192,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.proc_root = proc_root
        self.netns_dirs = tuple(netns_dirs)
        self._lister = lister
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._cache: OrderedDict[Key, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.own_netns = self._inode(os.path.join(proc_root, "self/ns/net"))
        self.lookups = 0  # namespace listings done, for tests and debugging

    @staticmethod
    def _inode(path: str) -> int:
        try:
            return os.stat(path).st_ino
        except OSError:
            return 0

    def names(self, keys: Iterable[Key]) -> dict[Key, str]:
        """Names for every (netns, ifindex); misses resolved in one batch."""
        now = self._clock()
        out: dict[Key, str] = {}
        missing: dict[int, set[int]] = {}
        with self._lock:
            for key in set(keys):
                netns, ifindex = key
                if ifindex == 0:
                    out[key] = NO_DEVICE
                    continue
                hit = self._cache.get(key)
                if hit is not None and hit[1] > now:
                    self._cache.move_to_end(key)
                    out[key] = hit[0]
                else:
                    missing.setdefault(netns, set()).add(ifindex)
        if missing:
            out.update(self._resolve(missing, now))
        return out

    def _resolve(self, missing: dict[int, set[int]], now: float) -> dict[Key, str]:
        paths = self._namespace_paths(set(missing) - {self.own_netns, 0})
        resolved: dict[Key, str] = {}
        for netns, indexes in missing.items():
            links: dict[int, str] = {}
            if netns == self.own_netns:
                links = self._list(None)
            elif netns in paths:
                links = self._list(paths[netns])
            for ifindex in indexes:
                resolved[(netns, ifindex)] = links.get(ifindex) or unresolved_label(ifindex)
        with self._lock:
            expires = now + self._ttl
            for key, name in resolved.items():
                self._cache[key] = (name, expires)
                self._cache.move_to_end(key)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return resolved

    def _list(self, path: str | None) -> dict[int, str]:
        self.lookups += 1
        try:
            return self._lister(path)
        except OSError as exc:
            log.debug("cannot list interfaces of netns %s: %s", path, exc)
            return {}

    def _namespace_paths(self, wanted: set[int]) -> dict[int, str]:
        """A path per wanted netns inode: /run/netns mounts first, then processes."""
        found: dict[int, str] = {}
        if not wanted:
            return found
        candidates: list[str] = []
        for d in self.netns_dirs:
            try:
                candidates += [os.path.join(d, n) for n in sorted(os.listdir(d))]
            except OSError:
                continue
        try:
            pids = [p for p in os.listdir(self.proc_root) if p.isdigit()]
        except OSError:
            pids = []
        candidates += [os.path.join(self.proc_root, p, "ns/net") for p in pids]
        for path in candidates:
            ino = self._inode(path)
            if ino in wanted and ino not in found:
                found[ino] = path
                if len(found) == len(wanted):
                    break
        return found

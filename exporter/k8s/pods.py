"""Network namespace -> Kubernetes pod, on the node, kept current as pods come and go.

The kernel reports a drop's network namespace (its inode).  A pod is found the
way the node itself knows it:

    netns inode  <-  /proc/<pid>/ns/net  of a process
    process      ->  /proc/<pid>/cgroup  names the pod's cgroup: ...pod<UID>...
    pod UID      ->  (namespace, name)   from a pod source: the API server
                                         (pods of this node only) or a file

Everything on that chain is an injected edge (proc root, pod source, clock),
so tests use a real /proc with processes in lab namespaces, or a fake tree.

Bounded: at most `max_pods` pods are named (beyond that a pod is labelled
"other"), and a namespace that disappeared is remembered for `expire_seconds`
(its last drops still carry the pod's name) and then forgotten; the agent
then deletes that namespace's kernel counters, so the series of a deleted pod
end instead of living forever.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from exporter.config.model import KubernetesConfig
from exporter.errors import ConfigError

log = logging.getLogger(__name__)

# kubelet's pod cgroup, with the systemd driver (UID with underscores) or cgroupfs (dashes):
#   /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c..._...slice/cri-containerd-...scope
#   /kubepods/burstable/pod1b2c...-.../0123abcd...
_POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
OTHER = "other"


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    node: str = ""
    uid: str = ""


class PodSource(Protocol):
    def pods(self) -> dict[str, PodRef]:
        """Pods of this node by UID."""
        ...


def pod_uid_from_cgroup(text: str) -> str | None:
    """The pod UID in a /proc/<pid>/cgroup file's text, dashes restored; None outside pods."""
    match = _POD_UID.search(text)
    return match.group(1).replace("_", "-") if match else None


class FilePodSource:
    """Pods from a JSON file: {"pods": [{"uid", "namespace", "name", "node"}]}.

    For nodes without API access (or where another agent writes the list), and for tests."""

    def __init__(self, path: str) -> None:
        self.path = path

    def pods(self) -> dict[str, PodRef]:
        with open(self.path) as f:
            doc = json.load(f)
        return {p["uid"]: PodRef(p["namespace"], p["name"], p.get("node", ""), p["uid"]) for p in doc["pods"]}


class ApiPodSource:
    """Pods of this node from the API server, with the pod's service account (in-cluster).

    One LIST with a field selector on spec.nodeName per refresh: the agent never
    sees other nodes' pods, and the API server's load is one small request per node
    per refresh interval."""

    TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

    def __init__(self, node: str, host: str | None = None, port: str | None = None, timeout: float = 5.0) -> None:
        self.node = node
        host = host or os.environ["KUBERNETES_SERVICE_HOST"]
        if ":" in host:  # an IPv6 service address needs brackets in a URL
            host = f"[{host}]"
        self.base = f"https://{host}:{port or os.environ.get('KUBERNETES_SERVICE_PORT', '443')}"
        self.timeout = timeout

    def pods(self) -> dict[str, PodRef]:
        # Imported here: ssl and urllib.request cost ~16 ms, on the way to the first attached
        # probe, for a source most hosts never use.
        import ssl
        import urllib.parse
        import urllib.request

        query = urllib.parse.urlencode({"fieldSelector": f"spec.nodeName={self.node}"})
        with open(self.TOKEN) as f:
            token = f.read().strip()
        req = urllib.request.Request(
            f"{self.base}/api/v1/pods?{query}",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        ctx = ssl.create_default_context(cafile=self.CA)
        with urllib.request.urlopen(req, timeout=self.timeout, context=ctx) as resp:
            doc = json.load(resp)
        out = {}
        for item in doc.get("items", []):
            meta = item.get("metadata", {})
            uid = meta.get("uid")
            if uid:
                out[uid] = PodRef(meta.get("namespace", ""), meta.get("name", ""), self.node, uid)
        return out


class PodResolver:
    def __init__(
        self,
        source: PodSource,
        proc_root: str = "/proc",
        refresh_seconds: float = 10.0,
        max_pods: int = 2000,
        expire_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self._proc = proc_root
        self._refresh = refresh_seconds
        self._max_pods = max_pods
        self._expire = expire_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._by_netns: dict[int, PodRef] = {}
        self._last_seen: dict[int, float] = {}  # netns -> when its pod was last seen alive
        self._named: set[str] = set()  # pod UIDs given their own label (bounded by max_pods)
        self._retiring: set[int] = set()  # expired at the last expiry pass: still named until the next
        self._next_refresh = 0.0
        self.refreshes = 0
        self.errors = 0
        self.denied = 0  # pod processes whose netns we may not read (CAP_SYS_PTRACE missing)
        self._warned_denied = False

    # -- lookups -------------------------------------------------------------

    def pod(self, netns: int) -> PodRef | None:
        """The pod living in `netns`, or None (host namespace, unknown)."""
        self._maybe_refresh()
        with self._lock:
            return self._by_netns.get(netns)

    def labels(self, netns: int) -> tuple[str, str]:
        """(namespace, pod) label values; ("", "") for the host."""
        ref = self.pod(netns)
        return (ref.namespace, ref.name) if ref else ("", "")

    def expired(self, netns_seen: Iterable[int]) -> set[int]:
        """Of the namespaces the kernel still counts for, those whose pod vanished longer than
        expire_seconds ago: their counters can go.  Called once per expiry pass.

        An expired namespace keeps its pod's labels until the next pass.  The caller deletes its
        counters now, and a metrics collection that read a counter just before that deletion
        still names the pod, instead of showing the pod's whole count once more as a series of
        no pod.  At the next pass the labels go, and counters that appeared in the namespace
        meanwhile (a late drop in a dying pod's namespace) are returned again, to go too."""
        self._maybe_refresh()
        now = self._clock()
        seen = set(netns_seen)
        with self._lock:
            # Not seen alive again since (a reused namespace inode belongs to its new pod).
            retired = {ns for ns in self._retiring if ns not in self._last_seen}
            for ns in retired:
                ref = self._by_netns.pop(ns, None)
                if ref is not None:
                    self._named.discard(ref.uid)
            gone = {ns for ns in seen if ns in self._last_seen and now - self._last_seen[ns] > self._expire}
            for ns in gone:
                self._last_seen.pop(ns, None)
            self._retiring = gone
        return gone | (retired & seen)

    # -- refresh -------------------------------------------------------------

    def _maybe_refresh(self) -> None:
        now = self._clock()
        if now < self._next_refresh:
            return
        self._next_refresh = now + self._refresh
        try:
            self.refresh()
        except Exception as exc:  # noqa: BLE001 - a pod source outage must not stop metrics
            self.errors += 1
            log.warning("pod lookup failed (keeping the last known pods): %s", exc)

    def refresh(self) -> None:
        pods = self.source.pods()
        found = self._scan(pods)
        now = self._clock()
        with self._lock:
            self.refreshes += 1
            for netns, ref in found.items():
                if ref.uid not in self._named and len(self._named) >= self._max_pods:
                    ref = PodRef(ref.namespace, OTHER, ref.node, ref.uid)  # cardinality guard
                else:
                    self._named.add(ref.uid)
                self._by_netns[netns] = ref
                self._last_seen[netns] = now

    def _scan(self, pods: dict[str, PodRef]) -> dict[int, PodRef]:
        """netns inode -> pod, for every process of a known pod."""
        found: dict[int, PodRef] = {}
        try:
            pids = [p for p in os.listdir(self._proc) if p.isdigit()]
        except OSError:
            return found
        denied = 0
        for pid in pids:
            base = os.path.join(self._proc, pid)
            try:
                with open(os.path.join(base, "cgroup")) as f:
                    uid = pod_uid_from_cgroup(f.read())
                if uid is None or uid not in pods:
                    continue
                netns = os.stat(os.path.join(base, "ns/net")).st_ino
            except PermissionError:
                # The kernel hides other users' namespaces without CAP_SYS_PTRACE: every drop
                # of that pod would stay unattributed, so say so instead of failing quietly.
                denied += 1
                continue
            except OSError:
                continue  # the process exited while we looked
            found.setdefault(netns, pods[uid])
        self.denied = denied
        if denied and not self._warned_denied:
            self._warned_denied = True
            log.warning(
                "cannot read the network namespace of %d pod process(es): permission denied "
                "(the agent needs CAP_SYS_PTRACE for pod labels)",
                denied,
            )
        return found


def resolver_from_config(cfg: KubernetesConfig, proc_root: str, env: Mapping[str, str]) -> PodResolver | None:
    """The netns -> pod map when kubernetes.pod_labels asks for it; ConfigError if it cannot work."""
    if not cfg.pod_labels:
        return None
    source: PodSource
    if cfg.pods_file:
        source = FilePodSource(cfg.pods_file)
    elif env.get("KUBERNETES_SERVICE_HOST"):
        node = cfg.node_name or env.get("NODE_NAME")
        if not node:
            raise ConfigError(
                "kubernetes.node_name: not set, and neither is NODE_NAME (set it from the downward "
                "API: fieldRef spec.nodeName)"
            )
        source = ApiPodSource(node)
    else:
        raise ConfigError(
            "kubernetes.pod_labels: needs kubernetes.pods_file, or the in-cluster API "
            "(KUBERNETES_SERVICE_HOST is not set: not running in a pod?)"
        )
    return PodResolver(
        source,
        proc_root=proc_root,
        refresh_seconds=cfg.refresh_seconds,
        max_pods=cfg.max_pods,
        expire_seconds=cfg.expire_seconds,
    )

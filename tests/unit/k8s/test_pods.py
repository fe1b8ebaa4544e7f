"""netns -> pod mapping: cgroup parsing, the fake /proc tree, cardinality guard, expiry, outages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from exporter.k8s.pods import OTHER, FilePodSource, PodRef, PodResolver, pod_uid_from_cgroup

UID_A = "1b2c3d4e-0000-4a4a-8b8b-123456789abc"
UID_B = "9f8e7d6c-1111-4b4b-9c9c-cba987654321"


def test_uid_from_cgroup_systemd_and_cgroupfs_drivers() -> None:
    systemd = (
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        f"{UID_A.replace('-', '_')}.slice/cri-containerd-0123abcd.scope\n"
    )
    assert pod_uid_from_cgroup(systemd) == UID_A
    assert pod_uid_from_cgroup(f"4:memory:/kubepods/besteffort/pod{UID_B}/0123abcd\n") == UID_B
    assert pod_uid_from_cgroup("0::/system.slice/sshd.service\n") is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Pods:
    """A pod source whose list the test edits; `fail` makes it raise like an API outage."""

    def __init__(self, pods: dict[str, PodRef]) -> None:
        self.list, self.fail, self.calls = pods, False, 0

    def pods(self) -> dict[str, PodRef]:
        self.calls += 1
        if self.fail:
            raise OSError("connection refused")
        return dict(self.list)


def fake_proc(root: Path, procs: dict[int, str]) -> dict[int, int]:
    """A /proc with one dir per pid: `cgroup` text and an `ns/net` file whose inode stands for the netns."""
    inodes = {}
    for pid, cgroup in procs.items():
        (root / str(pid) / "ns").mkdir(parents=True)
        (root / str(pid) / "cgroup").write_text(cgroup)
        (root / str(pid) / "ns" / "net").write_text("")
        inodes[pid] = os.stat(root / str(pid) / "ns" / "net").st_ino
    return inodes


def pod_cgroup(uid: str) -> str:
    return f"0::/kubepods.slice/kubepods-pod{uid.replace('-', '_')}.slice/cri-containerd-1.scope\n"


def test_namespaces_map_to_pods_and_host_to_nothing(tmp_path: Path) -> None:
    ns = fake_proc(tmp_path, {10: pod_cgroup(UID_A), 11: pod_cgroup(UID_A), 20: "0::/system.slice/x\n"})
    source = Pods({UID_A: PodRef("shop", "checkout-1", "node-1", UID_A)})
    r = PodResolver(source, proc_root=str(tmp_path), clock=Clock())
    assert r.labels(ns[10]) == ("shop", "checkout-1")
    assert r.pod(ns[20]) is None
    assert r.labels(ns[20]) == ("", "")
    assert source.calls == 1  # one refresh served every lookup within refresh_seconds


def test_cardinality_guard_names_at_most_max_pods(tmp_path: Path) -> None:
    ns = fake_proc(tmp_path, {10: pod_cgroup(UID_A), 20: pod_cgroup(UID_B)})
    r = PodResolver(
        Pods({UID_A: PodRef("a", "pod-a", uid=UID_A), UID_B: PodRef("b", "pod-b", uid=UID_B)}),
        proc_root=str(tmp_path),
        max_pods=1,
        clock=Clock(),
    )
    names = sorted([r.labels(ns[10])[1], r.labels(ns[20])[1]])
    assert OTHER in names and len(set(names) - {OTHER}) == 1


def test_deleted_pod_expires_after_grace(tmp_path: Path) -> None:
    ns = fake_proc(tmp_path, {10: pod_cgroup(UID_A)})
    clock = Clock()
    source = Pods({UID_A: PodRef("shop", "checkout-1", uid=UID_A)})
    r = PodResolver(source, proc_root=str(tmp_path), refresh_seconds=5, expire_seconds=60, clock=clock)
    assert r.labels(ns[10]) == ("shop", "checkout-1")
    source.list = {}  # the pod is deleted ...
    (tmp_path / "10" / "cgroup").write_text("")  # ... and its processes are gone
    clock.now += 30
    assert r.labels(ns[10]) == ("shop", "checkout-1")  # its last drops keep its name for a while
    assert r.expired({ns[10]}) == set()
    clock.now += 31
    assert r.expired({ns[10], 12345}) == {ns[10]}  # unknown namespaces never expire
    # Its counters go now; a collection that read one just before still names the pod ...
    assert r.labels(ns[10]) == ("shop", "checkout-1")
    # ... and at the next pass the name goes, with the counters a late drop made meanwhile.
    assert r.expired({ns[10]}) == {ns[10]}
    assert r.pod(ns[10]) is None
    assert r.expired({ns[10]}) == set()  # nothing more: a series of no pod from here on is a new one


def test_a_namespace_seen_alive_again_keeps_its_new_pod(tmp_path: Path) -> None:
    """A namespace inode the kernel reuses for a new pod between two expiry passes is that pod's."""
    ns = fake_proc(tmp_path, {10: pod_cgroup(UID_A)})
    clock = Clock()
    source = Pods({UID_A: PodRef("shop", "checkout-1", uid=UID_A)})
    r = PodResolver(source, proc_root=str(tmp_path), refresh_seconds=5, expire_seconds=60, clock=clock)
    assert r.labels(ns[10]) == ("shop", "checkout-1")
    source.list = {}
    (tmp_path / "10" / "cgroup").write_text("")
    clock.now += 61
    assert r.expired({ns[10]}) == {ns[10]}
    source.list = {UID_B: PodRef("shop", "checkout-2", uid=UID_B)}
    (tmp_path / "10" / "cgroup").write_text(pod_cgroup(UID_B))
    clock.now += 5
    assert r.labels(ns[10]) == ("shop", "checkout-2")
    assert r.expired({ns[10]}) == set()
    assert r.labels(ns[10]) == ("shop", "checkout-2")


def test_source_outage_keeps_the_last_known_pods(tmp_path: Path) -> None:
    ns = fake_proc(tmp_path, {10: pod_cgroup(UID_A)})
    clock = Clock()
    source = Pods({UID_A: PodRef("shop", "checkout-1", uid=UID_A)})
    r = PodResolver(source, proc_root=str(tmp_path), refresh_seconds=5, clock=clock)
    assert r.labels(ns[10]) == ("shop", "checkout-1")
    source.fail = True
    clock.now += 10
    assert r.labels(ns[10]) == ("shop", "checkout-1")
    assert r.errors == 1


def test_file_source(tmp_path: Path) -> None:
    f = tmp_path / "pods.json"
    f.write_text(json.dumps({"pods": [{"uid": UID_A, "namespace": "shop", "name": "checkout-1", "node": "n1"}]}))
    assert FilePodSource(str(f)).pods() == {UID_A: PodRef("shop", "checkout-1", "n1", UID_A)}
    f.write_text("{")
    with pytest.raises(json.JSONDecodeError):
        FilePodSource(str(f)).pods()

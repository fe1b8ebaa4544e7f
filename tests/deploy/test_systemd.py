"""deploy/systemd/pktpath.service: systemd's own verification and the hardening it promises.
(test_privileges.py runs the agent with the unit's user and capabilities.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.agent_process import pktpath_bin
from tests.deploy.conftest import DEPLOY, require_tool
from tests.deploy.live import unit_settings

UNIT = DEPLOY / "systemd" / "pktpath.service"


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    """`systemd-analyze verify` with no warning at all (it exits 0 even for unknown keys, so its
    output is checked too). The unit names /opt/pktpath/bin/pktpath, which verify requires to
    exist: the copy verified points at this checkout's pktpath instead."""
    unit = tmp_path / "pktpath.service"
    unit.write_text(UNIT.read_text().replace("/opt/pktpath/bin/pktpath", pktpath_bin()))
    proc = subprocess.run(
        [require_tool("systemd-analyze", "systemd"), "verify", str(unit)], capture_output=True, text=True
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert str(unit) not in out and "pktpath.service" not in out, out


def test_verify_would_notice_a_mistake(tmp_path: Path) -> None:
    """Control for the test above: a misspelled directive shows up in the output."""
    unit = tmp_path / "pktpath.service"
    unit.write_text(
        UNIT.read_text().replace("/opt/pktpath/bin/pktpath", pktpath_bin()).replace("ProtectHome=", "ProtectHomes=")
    )
    proc = subprocess.run(
        [require_tool("systemd-analyze", "systemd"), "verify", str(unit)], capture_output=True, text=True
    )
    assert "ProtectHomes" in proc.stdout + proc.stderr


def test_hardening() -> None:
    s = unit_settings(UNIT.read_text())
    caps = s["CapabilityBoundingSet"].split()
    assert caps == s["AmbientCapabilities"].split() == ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
    expected = {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelTunables": "yes",
        "RestrictNamespaces": "net",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "LimitMEMLOCK": "infinity",
    }
    assert {k: s.get(k) for k in expected} == expected
    assert set(s["ReadOnlyPaths"].split()) >= {"/sys/kernel/btf", "-/run/netns", "/etc/pktpath"}
    assert s["ExecStart"] == "/opt/pktpath/bin/pktpath run -c /etc/pktpath/config.yaml"
    assert "MemoryDenyWriteExecute" not in s  # ctypes callbacks need it off (see the unit)


def test_unit_capabilities_match_the_chart_defaults() -> None:
    """One list of what the agent needs: the chart's default `add` list, CAP_-prefixed."""
    from tests.deploy.helm import template

    container = template().one("DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    chart = [f"CAP_{c}" for c in container["securityContext"]["capabilities"]["add"]]
    assert unit_settings(UNIT.read_text())["AmbientCapabilities"].split() == chart


def test_shipped_config_is_valid() -> None:
    proc = subprocess.run([pktpath_bin(), "validate", str(DEPLOY / "config.yaml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

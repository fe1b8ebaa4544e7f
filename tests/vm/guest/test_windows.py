"""Sampling windows with function hooks (fentry trampolines, kprobes) on stock kernels under QEMU:
the session agent runs the default config, so its path hooks come and go around a 1 s window every
10 s.  The hooks are really attached inside a window and really detached between windows, the
probe_attached gauge says so as they come and go, and no window is missed."""

from __future__ import annotations

import time

from tests.agent_process import AgentProcess, wait_until
from tests.vm.guest.conftest import EXPECTED_FAMILY, MODE, attached

PERIOD, WINDOW = 10, 1  # the defaults
FUNCTION_HOOK = "ip_rcv_finish"  # path-only, a function hook in every mode (no tracepoint)


def windows_done(agent: AgentProcess) -> float:
    return sum(agent.value("pktpath_sampling_windows_total", outcome=o) for o in ("on_time", "late"))


def test_function_path_hooks_come_and_go_with_the_windows(agent: AgentProcess) -> None:
    # Under emulation the first attach of a trampoline can take a second: two windows at most.
    assert wait_until(lambda: windows_done(agent) >= 1, 2 * PERIOD + 5), agent.log()
    assert agent.value("pktpath_sampling_windows_total", outcome="missed") == 0, agent.log()
    # How long the edges take varies with the family and the emulation (an fentry detach waits for
    # RCU Tasks grace periods, seconds in a guest; the lead before an opening grows with the last
    # attach): so no fixed gap phase, only that the hook is on inside a window and off at some
    # point between windows.
    seen_on = seen_off = False
    deadline = time.time() + 2 * PERIOD + 5
    while time.time() < deadline and not (seen_on and seen_off):
        phase = time.time() % PERIOD
        families = attached(agent, FUNCTION_HOOK)
        if families:
            assert len(families) == 1 and families <= EXPECTED_FAMILY.get(MODE, {MODE}), (phase, families)
        if 0.2 <= phase <= WINDOW - 0.2 and families:
            seen_on = True  # (a window whose attach overran its lead opens late: the next one counts)
        elif phase > WINDOW and time.time() % PERIOD > WINDOW and not families:
            seen_off = True
        time.sleep(0.1)
    assert seen_on and seen_off, (seen_on, seen_off, agent.log())
    edges = agent.scrape()
    detaches = sum(
        v for k, v in edges.get("pktpath_sampling_window_edge_seconds_count", {}).items() if dict(k)["edge"] == "detach"
    )
    assert detaches >= 1

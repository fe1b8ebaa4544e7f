"""The sampling windows' kprobe.multi twins, as the compiled objects have them (opened, not loaded:
no privilege needed): the kprobes in pktpath.bpf.o, their twins and the dispatchers in window.bpf.o.
Loading and attaching them needs a stock kernel: tests/vm/guest/test_windows.py and test_paths.py
run them in the 5.10, 6.1 and 6.12 guests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.loader import libbpf
from exporter.loader.engine import default_object_path, shared_map, window_object_path
from exporter.loader.probes import parse_program
from exporter.loader.window_links import DISPATCHERS, Twin, function_addresses, parse_twin
from exporter.model.hops import PATH_ONLY_PROGRAMS


@pytest.fixture(scope="module")
def obj() -> Iterator[libbpf.BpfObject]:
    o = libbpf.BpfObject(default_object_path())
    yield o
    o.close()


@pytest.fixture(scope="module")
def window() -> Iterator[libbpf.BpfObject]:
    o = libbpf.BpfObject(window_object_path(default_object_path()))
    yield o
    o.close()


def test_the_agents_object_carries_no_window_program_and_the_window_object_nothing_else(
    obj: libbpf.BpfObject, window: libbpf.BpfObject
) -> None:
    """An agent that never attaches a window's function hooks as links (a tracepoint-only kernel,
    one without kprobe.multi) never opens window.bpf.o, so it does not pay for its programs: libbpf
    copies every program of an object it opens (1 MB of memory for the twins, docs/benchmarks.md)."""
    assert not [p.name for p in obj.programs if p.section.partition("/")[0] in ("kprobe.multi", "kretprobe.multi")]
    dispatchers = {d for d, _array in DISPATCHERS.values()}
    assert [p.name for p in window.programs if parse_twin(p.name, p.section) is None] == sorted(dispatchers)
    # Every map the window object names is one of the agent's, which it shares (WindowLinks.load):
    # its .bss is the agent's .bss, whatever libbpf calls each after its object.
    for m in window.maps:
        if not m.name.endswith(".rodata"):
            mine = shared_map(obj, m.name)
            assert (mine.name.partition(".")[2], mine.value_size) == (m.name.partition(".")[2], m.value_size), m.name
    assert shared_map(obj, "window.bss").name == "pktpath.bss"


def test_twins_and_dispatchers_are_told_apart_from_hop_programs() -> None:
    assert parse_twin("ip_rcv__kmulti", "kprobe.multi/ip_rcv") == Twin("ip_rcv__kmulti", "ip_rcv", "ip_rcv", "call")
    assert parse_twin("nf_hook_slow__kmultiret", "kretprobe.multi/nf_hook_slow") == Twin(
        "nf_hook_slow__kmultiret", "nf_hook_slow", "nf_hook_slow", "return"
    )
    assert parse_twin("window_call", "kprobe.multi") is None  # a dispatcher: no hop, no function
    assert parse_twin("ip_rcv__kprobe", "kprobe/ip_rcv") is None
    # Never a hop candidate of the engine's: windows load them, the engine never attaches them.
    assert parse_program("ip_rcv__kmulti", "kprobe.multi/ip_rcv") is None


def test_every_kprobe_program_has_its_twin_on_the_same_function(
    obj: libbpf.BpfObject, window: libbpf.BpfObject
) -> None:
    """A hop reports the same event whichever way it runs: its kprobe and its kretprobe each have
    a kprobe.multi twin on the same function, and nothing else has one."""
    kprobes = {}
    for p in obj.programs:
        spec = parse_program(p.name, p.section)
        if spec is not None and spec.family == "kprobe":
            way = "return" if p.section.startswith("kretprobe/") else "call"
            kprobes[(spec.hop, way)] = spec.target
    twins = {(t.hop, t.way): t.function for p in window.programs if (t := parse_twin(p.name, p.section))}
    assert twins == kprobes
    # Every path-only function hook can switch this way.
    function_hops = {hop for hop, _ in kprobes}
    assert {h for h in PATH_ONLY_PROGRAMS if h in function_hops} == {h for h, _ in twins if h in PATH_ONLY_PROGRAMS}


def test_the_program_arrays_hold_every_twin(obj: libbpf.BpfObject, window: libbpf.BpfObject) -> None:
    twins = [t for p in window.programs if (t := parse_twin(p.name, p.section))]
    names = {p.name for p in window.programs}
    for way, (dispatcher, array) in DISPATCHERS.items():
        assert dispatcher in names
        # The agent's object creates the array; the window object's copy is replaced by it.
        assert obj.map(array).max_entries >= sum(1 for t in twins if t.way == way), array


def test_function_addresses_come_from_vmlinux_text_symbols() -> None:
    kallsyms = "\n".join(
        [
            "ffffffff81000000 T _stext",
            "ffffffff81a00010 T ip_rcv",
            "ffffffff81a00020 t ip_rcv_finish",
            "ffffffff81a00030 T ip_rcv_finish_core",  # a longer name is another function
            "ffffffff81b00000 t ip_rcv_finish",  # a second static of that name: the first is taken
            "ffffffff81c00000 d ip_output",  # data, not text
            "0000000000000000 T ip_forward",  # hidden (kptr_restrict)
            "ffffffffc0001000 t nft_do_chain\t[nf_tables]",  # a module's
        ]
    )
    found = function_addresses(["ip_rcv", "ip_rcv_finish", "ip_output", "ip_forward", "nft_do_chain"], kallsyms)
    assert found == {"ip_rcv": 0xFFFFFFFF81A00010, "ip_rcv_finish": 0xFFFFFFFF81A00020}
    assert function_addresses([], kallsyms) == {}

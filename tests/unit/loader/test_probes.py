"""Hop candidates come from program names and sections; families are ordered best first."""

from __future__ import annotations

import pytest

from exporter.loader.probes import FAMILIES, allowed_families, group_hops, parse_program


def test_parse_program() -> None:
    spec = parse_program("nf_hook_slow__fexit", "fexit/nf_hook_slow")
    assert spec is not None
    assert (spec.hop, spec.family, spec.target) == ("nf_hook_slow", "fentry", "nf_hook_slow")
    assert parse_program("helper", "tp_btf/kfree_skb") is None  # no hop__ prefix
    assert parse_program("x__y", "xdp") is None  # not a hop section
    assert parse_program("x__y", "kretprobe/ip_rcv").family == "kprobe"  # type: ignore[union-attr]


def test_group_orders_families_best_first_and_keeps_pairs() -> None:
    specs = [
        parse_program(n, s)
        for n, s in [
            ("ip_rcv__tp", "tp_btf/netif_receive_skb"),
            ("ip_rcv__kprobe", "kprobe/ip_rcv"),
            ("ip_rcv__fentry", "fentry/ip_rcv"),
            ("ip_rcv__fexit", "fexit/ip_rcv"),
        ]
    ]
    hops = group_hops(s for s in specs if s)
    assert list(hops["ip_rcv"].families) == ["fentry", "kprobe", "tracepoint"]
    assert [s.name for s in hops["ip_rcv"].families["fentry"]] == ["ip_rcv__fentry", "ip_rcv__fexit"]


def test_allowed_families() -> None:
    assert allowed_families("auto") == FAMILIES
    assert allowed_families("kprobe") == ("kprobe", "tracepoint")
    assert allowed_families("tracepoint") == ("tracepoint",)
    with pytest.raises(ValueError):
        allowed_families("xdp")


def test_forced_function_family_applies_to_function_hooks_only() -> None:
    # A function hook with both families attaches only the forced one ...
    assert allowed_families("kprobe", {"fentry", "kprobe"}) == ("kprobe",)
    assert allowed_families("fentry", {"fentry", "kprobe"}) == ("fentry",)
    # ... a tracepoint-only hop (kfree_skb: the drop counters) keeps its tracepoint ...
    assert allowed_families("kprobe", {"tracepoint"}) == ("tracepoint",)
    assert allowed_families("fentry", {"tracepoint"}) == ("tracepoint",)
    # ... and forcing tracepoints leaves function hooks out.
    assert allowed_families("tracepoint", {"fentry", "kprobe"}) == ("tracepoint",)
    assert allowed_families("auto", {"tracepoint"}) == FAMILIES


def test_status_dict_explains_every_candidate() -> None:
    hops = group_hops(s for s in [parse_program("a__f", "fentry/a"), parse_program("a__t", "tp_btf/a")] if s)
    st = hops["a"]
    st.attached = "tracepoint"
    st.problems["fentry"] = "fentry refused by this kernel: Operation not permitted"
    assert st.as_dict() == {
        "hop": "a",
        "attached": "tracepoint",
        "candidates": {"fentry": "fentry refused by this kernel: Operation not permitted", "tracepoint": "attached"},
    }


def test_verifier_complaint_is_the_sentence_not_the_trace() -> None:
    from exporter.loader.engine import verifier_complaint

    log = [
        "libbpf: prog 'x__tp_btf': BPF program load failed: Invalid argument",
        "func#0 @0",
        "458: (18) r2 = 0x17                   ; R2=23",
        "460: (85) call bpf_rdonly_cast#65486",
        "mark_precise: frame0: regs=r2 stack= before 458: (18) r2 = 0x17",
        "kfunc bpf_rdonly_cast type ID argument must be of a struct or void",
        "verification time 57165 usec",
        "stack depth 240",
        "processed 2681 insns (limit 1000000) max_states_per_insn 7 total_states 102",
    ]
    assert verifier_complaint(log) == "kfunc bpf_rdonly_cast type ID argument must be of a struct or void"
    assert verifier_complaint(["libbpf: nothing from the verifier"]) == ""


def test_relocation_failure_names_the_program() -> None:
    """A CO-RE failure names its program only in a "relo #N" line; the engine must still turn it off."""
    from exporter.loader.engine import _REFUSED, relocation_complaint

    log = [
        "libbpf: prog 'nft_do_chain__kretprobe': relo #1: relocation decision ambiguity: "
        "success 112850 != success 112777",
        "libbpf: prog 'nft_do_chain__kretprobe': relo #1: failed to relocate: -22",
        "libbpf: failed to perform CO-RE relocations: -22",
    ]
    names = [m.group(1) for line in log if (m := _REFUSED.search(line))]
    assert names == ["nft_do_chain__kretprobe"]
    assert relocation_complaint(log, "nft_do_chain__kretprobe").startswith("relocation decision ambiguity")

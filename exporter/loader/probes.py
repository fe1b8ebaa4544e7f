"""Hops and their attach candidates, derived from the BPF object itself.

A BPF program named `<hop>__<anything>` in section `<kind>/<target>` is a
candidate for `<hop>`.  Its attach family comes from the section kind:

    fentry/, fexit/          -> "fentry"      (typed args, cheapest function hook)
    kprobe/, kretprobe/      -> "kprobe"      (fallback where fentry is refused)
    tp_btf/, raw_tp/         -> "tracepoint"  (always available, even under lockdown)

A hop attaches *all* programs of one family (e.g. fentry + fexit of the same
function) or none of them, trying families best first.  The object is the
single source of truth: adding a program adds its hop to `pktpath check` and to
`pktpath_probe_attached` with no Python change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# Best first.  Measured (docs/benchmarks.md, "Attach families per hop"; 6.12 under QEMU with
# -icount, so in executed instructions): fentry costs about a third of a kprobe on the same function
# (ip_rcv: +271 vs +723 guest-ns per packet), so fentry before kprobe is also the cheaper order.
# A tp_btf tracepoint dispatches cheaper still than fentry at the same point (netif_receive_skb:
# +166 vs +262; kfree_skb: +180 vs +265), but tracepoints come last for what they lack (no return
# value, fixed arguments), not for cost.  Today no hop offers both a tracepoint and a function
# hook; one that would should offer the tracepoint alone when it carries everything the hop needs.
FAMILIES = ("fentry", "kprobe", "tracepoint")

_SECTION_FAMILY = {
    "fentry": "fentry",
    "fexit": "fentry",
    "kprobe": "kprobe",
    "kretprobe": "kprobe",
    "tp_btf": "tracepoint",
    "raw_tp": "tracepoint",
    "raw_tracepoint": "tracepoint",
}


@dataclass(frozen=True)
class ProgramSpec:
    name: str  # BPF program (function) name
    section: str  # ELF section, e.g. "tp_btf/kfree_skb"
    hop: str
    family: str
    target: str  # kernel function or tracepoint


def split_program(name: str, section: str) -> tuple[str, str, str] | None:
    """(hop, section kind, target) of a program named `<hop>__<anything>` in section
    `<kind>/<target>`, or None for a name or section not of that form."""
    hop, sep, _ = name.partition("__")
    kind, slash, target = section.partition("/")
    if not sep or not slash or not hop:
        return None
    return hop, kind, target


def parse_program(name: str, section: str) -> ProgramSpec | None:
    """The spec of one program, or None for programs that are not hop candidates."""
    parts = split_program(name, section)
    family = _SECTION_FAMILY.get(parts[1]) if parts else None
    if parts is None or family is None:
        return None
    return ProgramSpec(name=name, section=section, hop=parts[0], family=family, target=parts[2])


@dataclass
class HopStatus:
    """What happened to one hop: the family attached, and why the others were not."""

    hop: str
    families: dict[str, list[ProgramSpec]] = field(default_factory=dict)  # best first
    attached: str | None = None
    problems: dict[str, str] = field(default_factory=dict)  # family -> one-line reason

    def as_dict(self) -> dict[str, object]:
        return {
            "hop": self.hop,
            "attached": self.attached,
            "candidates": {
                fam: ("attached" if fam == self.attached else self.problems.get(fam, "not needed"))
                for fam in self.families
            },
        }


def group_hops(specs: Iterable[ProgramSpec]) -> dict[str, HopStatus]:
    """Hops in first-seen order, each with its candidate families best first."""
    hops: dict[str, HopStatus] = {}
    for spec in specs:
        hops.setdefault(spec.hop, HopStatus(spec.hop)).families.setdefault(spec.family, []).append(spec)
    for status in hops.values():
        status.families = {f: status.families[f] for f in FAMILIES if f in status.families}
    return hops


FUNCTION_FAMILIES = ("fentry", "kprobe")
# pktpath_probe_attached's attach_type for a continuation: reached by a tail call (engine.CONTINUATIONS).
TAIL_CALL = "tail_call"


def allowed_families(mode: str, candidates: Iterable[str] | None = None) -> tuple[str, ...]:
    """Families a config `probes.mode` permits for a hop with these candidate families, best first.

    "auto" permits all.  A forced function-hook family (fentry, kprobe) applies to the hops that
    have a candidate of it; a hop without one (the tracepoint-only hops: kfree_skb,
    netif_receive_skb ...) keeps its tracepoint, since forcing kprobes is about how function
    hooks attach, not about losing the drop counters.  "tracepoint" permits tracepoints only.
    Without `candidates`: the families the mode permits to some hop.
    """
    if mode == "auto":
        return FAMILIES
    if mode not in FAMILIES:
        raise ValueError(f"unknown probe mode {mode!r}")
    if mode not in FUNCTION_FAMILIES:
        return (mode,)
    if candidates is None:
        return (mode, "tracepoint")
    return (mode,) if mode in set(candidates) else ("tracepoint",)


_SHORT = {"tp_btf": "tp", "raw_tp": "tp", "raw_tracepoint": "tp"}


def candidates_text(specs: Iterable[ProgramSpec]) -> str:
    """A loader hop's attach candidates, best family first, as the docs show them:
    "fentry+fexit, kprobe+kretprobe", "tp"."""
    by_family: dict[str, list[str]] = {}
    for spec in specs:
        kind = spec.section.partition("/")[0]
        by_family.setdefault(spec.family, []).append(_SHORT.get(kind, kind))
    return ", ".join("+".join(dict.fromkeys(by_family[f])) for f in FAMILIES if f in by_family)

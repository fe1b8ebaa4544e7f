"""The names pktpath gives to numbers the kernel reports, in one place.

IP protocols, ethertypes, ICMP types, TCP flags, FIB tables, route results and the netfilter
families, hooks and verdicts: uapi and IANA numbers, fixed for good, so a table beats asking
/etc/protocols (absent in minimal container images).  Drop reasons are not here: their numbers
differ between kernels and are read from the running kernel's BTF (decoders/drop_reasons.py).

Every other module takes its names from here: the config's protocol names, the metric labels, the
span names and attributes, and the shell's lines (in the original tool's words where it had some).
"""

from __future__ import annotations

import errno

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_SCTP = 132
IPPROTO_ICMPV6 = 58
PORT_PROTOCOLS = (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP)  # the transports whose ports pktpath reads or shows

# Lowercase names: the `protocol` label, pktpath.ip.protocol, and what `filter.protocols` accepts.
IP_PROTOCOLS = {
    0: "ipv6-hopopt",  # only reachable for IPv6: IPv4 protocol 0 is reserved
    1: "icmp",
    2: "igmp",
    4: "ipip",
    6: "tcp",
    17: "udp",
    41: "ipv6",
    43: "ipv6-route",
    44: "ipv6-frag",
    47: "gre",
    50: "esp",
    51: "ah",
    58: "icmpv6",
    59: "ipv6-nonxt",
    60: "ipv6-opts",
    89: "ospf",
    103: "pim",
    112: "vrrp",
    115: "l2tp",
    132: "sctp",
    136: "udplite",
    143: "ethernet",
}

# The protocols `filter.protocols` takes by name (numbers 0..255 are accepted too).
FILTER_PROTOCOLS = ("icmp", "igmp", "tcp", "udp", "gre", "esp", "ah", "icmpv6", "sctp")

# Ethertypes seen on the drop path without an IP header.
ETHERTYPES = {
    0x0806: "arp",
    0x8035: "rarp",
    0x88CC: "lldp",
    0x8100: "vlan",
    0x88A8: "qinq",
    0x8847: "mpls",
    0x8848: "mpls",
    0x8863: "pppoe",
    0x8864: "pppoe",
    0x88E5: "macsec",
    0x88F7: "ptp",
    0x0004: "802.2",  # ETH_P_802_2: raw LLC frames (STP and friends)
}

# An IPv4 or IPv6 packet whose IP header is cut short (a runt or truncated frame): its transport is
# unknown, and no byte past its end is read to guess it.
TRUNCATED = "truncated"


def ip_protocol_name(number: int) -> str:
    """The lowercase name of an IP protocol number; "ip-N" for one without a name."""
    return IP_PROTOCOLS.get(number, f"ip-{number}")


def protocol_label(l3_proto: int, l4_proto: int, truncated: bool = False) -> str:
    """'tcp', 'udp', 'icmp', ... for IP; 'arp', 'lldp', ... otherwise; 'other' as the last resort;
    'truncated' for IP whose header is cut short."""
    if truncated and l3_proto in (ETH_P_IP, ETH_P_IPV6):
        return TRUNCATED
    if l3_proto == ETH_P_IP:
        return "ip-unknown" if l4_proto == 0 else ip_protocol_name(l4_proto)
    if l3_proto == ETH_P_IPV6:
        return ip_protocol_name(l4_proto)
    if l3_proto == 0:
        return "none"
    return ETHERTYPES.get(l3_proto, "other")


def protocol_display(number: int) -> str:
    """As spans and the shell show it: TCP, UDP, ICMPv6, IP-253."""
    name = ip_protocol_name(number)
    return "ICMPv6" if name == "icmpv6" else name.upper()


# ICMP and ICMPv6 types, as span names spell them; the shell shows them title-cased
# ("Echo Request"), as the original tool did.
ICMP_TYPES = {
    0: "echo-reply",
    3: "destination-unreachable",
    4: "source-quench",
    5: "redirect",
    8: "echo-request",
    9: "router-advertisement",
    10: "router-solicitation",
    11: "time-exceeded",
    12: "parameter-problem",
    13: "timestamp",
    14: "timestamp-reply",
}
ICMPV6_TYPES = {
    1: "destination-unreachable",
    2: "packet-too-big",
    3: "time-exceeded",
    4: "parameter-problem",
    128: "echo-request",
    129: "echo-reply",
    130: "multicast-listener-query",
    131: "multicast-listener-report",
    132: "multicast-listener-done",
    133: "router-solicitation",
    134: "router-advertisement",
    135: "neighbor-solicitation",
    136: "neighbor-advertisement",
    137: "redirect",
    143: "multicast-listener-report-v2",
}


def icmp_type_name(protocol: int, icmp_type: int) -> str:
    """ "echo-request", "packet-too-big" ...; "type N" for one without a name."""
    names = ICMPV6_TYPES if protocol == IPPROTO_ICMPV6 else ICMP_TYPES
    return names.get(icmp_type, f"type {icmp_type}")


def title(name: str) -> str:
    """ "echo-request" -> "Echo Request": the original tool's spelling."""
    return name.replace("-", " ").title()


TCP_FLAGS = (
    (0x01, "FIN"),
    (0x02, "SYN"),
    (0x04, "RST"),
    (0x08, "PSH"),
    (0x10, "ACK"),
    (0x20, "URG"),
    (0x40, "ECE"),
    (0x80, "CWR"),
)


def tcp_flags_text(flags: int, none: str = "NONE") -> str:
    """ "SYN|ACK"; `none` when no flag is set."""
    return "|".join(name for bit, name in TCP_FLAGS if flags & bit) or none


FIB_TABLES = {253: "default", 254: "main", 255: "local"}


def table_name(table: int) -> str:
    return FIB_TABLES.get(table, str(table))


# What one table's route lookup found: its error, as the fib tracepoints give it
# (net/ipv4/fib_semantics.c fib_props; net/ipv6/route.c ip6_rt_type_to_error, with IPv6's
# null entry as ENETUNREACH).  EAGAIN: no route in that table (or a `throw` route).
ROUTE_RESULTS = {
    0: "found",
    -errno.EAGAIN: "no route",
    -errno.ENETUNREACH: "no route",
    -errno.EINVAL: "blackhole",
    -errno.EHOSTUNREACH: "unreachable",
    -errno.EACCES: "prohibit",
}


def route_result(err: int) -> str:
    """found, no route, blackhole, unreachable, prohibit; "error N" for anything else."""
    return ROUTE_RESULTS.get(err, f"error {err}")


def errno_text(ret: int) -> str:
    """-18 -> "EXDEV(-18)"."""
    return f"{errno.errorcode.get(-ret, 'error')}({ret})"


# Netfilter (include/uapi/linux/netfilter.h): label values, and the original tool's constants.
NF_FAMILIES = {0: "unspec", 1: "inet", 2: "ipv4", 3: "arp", 5: "netdev", 7: "bridge", 10: "ipv6"}
NF_HOOKS = {0: "prerouting", 1: "input", 2: "forward", 3: "output", 4: "postrouting", 5: "ingress", 6: "egress"}
NF_VERDICTS = {0: "drop", 1: "accept", 2: "stolen", 3: "queue", 4: "repeat", 5: "stop"}
NF_FAMILY_CONSTANTS = {
    0: "NFPROTO_UNSPEC",
    1: "NFPROTO_INET",
    2: "NFPROTO_IPV4",
    3: "NFPROTO_ARP",
    5: "NFPROTO_NETDEV",
    7: "NFPROTO_BRIDGE",
    10: "NFPROTO_IPV6",
}
NF_HOOK_CONSTANTS = {
    0: "NF_INET_PRE_ROUTING",
    1: "NF_INET_LOCAL_IN",
    2: "NF_INET_FORWARD",
    3: "NF_INET_LOCAL_OUT",
    4: "NF_INET_POST_ROUTING",
    5: "NF_INET_INGRESS",
}
NF_VERDICT_CONSTANTS = {0: "NF_DROP", 1: "NF_ACCEPT", 2: "NF_STOLEN", 3: "NF_QUEUE", 4: "NF_REPEAT", 5: "NF_STOP"}
# iptables' built-in chain of each hook.  A legacy (x_tables) table has no chain objects in the
# kernel: ipt_do_table() walks the table's rules from the hook's entry point, which is that chain.
BUILTIN_CHAINS = {0: "PREROUTING", 1: "INPUT", 2: "FORWARD", 3: "OUTPUT", 4: "POSTROUTING"}


def nf_family_name(n: int) -> str:
    return NF_FAMILIES.get(n, str(n))


def nf_hook_name(n: int) -> str:
    return NF_HOOKS.get(n, str(n))


def nf_verdict_name(n: int) -> str:
    return NF_VERDICTS.get(n, str(n))


def builtin_chain(hook: int) -> str:
    return BUILTIN_CHAINS.get(hook, f"hook{hook}")

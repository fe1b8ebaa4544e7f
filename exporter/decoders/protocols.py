"""Protocol labels: lowercase names for the ethertype / IP protocol a drop carried."""

from __future__ import annotations

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD

# IANA protocol numbers (fixed by RFC, not kernel-dependent), named as in
# /etc/protocols, which minimal container images often lack.
_IP_PROTOCOLS = {
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
    0: "ipv6-hopopt",  # only reachable for IPv6: IPv4 protocol 0 is reserved
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

# Ethertypes seen on the drop path without an IP header.
_ETHERTYPES = {
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


def protocol_label(l3_proto: int, l4_proto: int, truncated: bool = False) -> str:
    """'tcp', 'udp', 'icmp', ... for IP; 'arp', 'lldp', ... otherwise; 'other' as the last resort;
    'truncated' for IP whose header is cut short."""
    if truncated and l3_proto in (ETH_P_IP, ETH_P_IPV6):
        return TRUNCATED
    if l3_proto == ETH_P_IP:
        if l4_proto == 0:
            return "ip-unknown"
        return _IP_PROTOCOLS.get(l4_proto, f"ip-{l4_proto}")
    if l3_proto == ETH_P_IPV6:
        return _IP_PROTOCOLS.get(l4_proto, f"ip-{l4_proto}")
    if l3_proto == 0:
        return "none"
    return _ETHERTYPES.get(l3_proto, "other")

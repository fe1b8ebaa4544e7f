from exporter.model.vocabulary import protocol_label


def test_labels() -> None:
    assert protocol_label(0x0800, 6) == "tcp"
    assert protocol_label(0x0800, 17) == "udp"
    assert protocol_label(0x0800, 1) == "icmp"
    assert protocol_label(0x86DD, 58) == "icmpv6"
    assert protocol_label(0x86DD, 0) == "ipv6-hopopt"
    assert protocol_label(0x0800, 0) == "ip-unknown"
    assert protocol_label(0x0800, 253) == "ip-253"
    assert protocol_label(0x0806, 0) == "arp"
    assert protocol_label(0x9999, 0) == "other"
    assert protocol_label(0, 0) == "none"

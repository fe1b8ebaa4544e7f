"""Fixtures every tier shares: the network lab (tests/kernel/lab.py), built per test and torn down after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kernel.lab import Lab


@pytest.fixture
def lab() -> Iterator[Lab]:
    """client -- router -- server namespaces over veth, IPv4 only."""
    with Lab.create() as built:
        yield built


@pytest.fixture
def lab6() -> Iterator[Lab]:
    """The same lab with IPv6 too (2001:db8::/32 addresses)."""
    with Lab.create(ipv6=True) as built:
        yield built

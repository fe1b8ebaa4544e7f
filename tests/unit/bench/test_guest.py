"""bench/guest.py: what the guest's `python -m bench` is told."""

from __future__ import annotations

import pytest

from bench.cli import _parser
from bench.guest import inner_args


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--in-guest", "6.12"], []),
        (["--in-guest=6.12", "--only", "paths", "--rounds", "2"], ["--only", "paths", "--rounds", "2"]),
        (
            ["--quick", "--output", "/tmp/x.json", "--in-guest", "6.1", "--summary-dir=/tmp/s", "--seconds", "5"],
            ["--quick", "--seconds", "5"],
        ),
    ],
)
def test_the_guest_gets_every_option_but_where_and_which_guest(argv: list[str], expected: list[str]) -> None:
    inner = inner_args(argv)
    assert inner == expected
    # What is passed on parses as the same run, less --in-guest: the guest measures in place.
    outer, guest = _parser().parse_args(argv), _parser().parse_args(inner)
    assert guest.in_guest is None
    for key in ("only", "quick", "rounds", "seconds", "starts", "scrape_seconds", "pktpath"):
        assert getattr(guest, key) == getattr(outer, key), key

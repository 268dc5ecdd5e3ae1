"""The library reproduces, bit for bit on CPU, the losses and deltas of a short SFT-AG and
SFT-MA run recorded before its memory layout changed (tests/sft/golden/make_golden.py)."""
from __future__ import annotations

import json

import pytest

from golden.make_golden import GOLDEN, run


@pytest.mark.parametrize("selection", ["ag", "ma"])
def test_reproduces_the_golden_run(selection):
    expected = json.loads(GOLDEN.read_text())[selection]
    got = run(selection)
    assert got["reselections"] == expected["reselections"] == 3
    assert got["losses"] == expected["losses"]
    assert got["layers"] == expected["layers"]

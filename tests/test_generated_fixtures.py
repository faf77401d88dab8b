"""Replays every shrunk mismatch that the generated-loss runs saved (tests/fixtures/generated/*.json).

Each fixture holds a minimal generated loss (its AST and its source), one call, the backend and dtype, and
what was observed. Replayed against the mpmath truth (tests/genloss.py), a fixed defect must stay fixed;
a fixture of a defect still open elsewhere carries ``xfail`` (the defect) and must still fail (strict).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import gencheck as K

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "generated").glob("*.json"))


def _param(path: Path):
    obj = json.loads(path.read_text())
    marks = [pytest.mark.xfail(strict=True, reason=obj["xfail"])] if obj.get("xfail") else []
    return pytest.param(obj, id=path.stem, marks=marks)


@pytest.mark.parametrize("fixture", [_param(p) for p in FIXTURES])
def test_generated_fixture(fixture):
    if fixture["backend"] == "triton" and importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    mismatches = K.replay(fixture)
    assert not mismatches, f"{fixture['source']}\n{mismatches[:3]}"


def test_there_are_fixtures():
    assert FIXTURES, "tests/fixtures/generated/ holds the shrunk mismatches of the generated-loss runs"

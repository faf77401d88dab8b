"""The checker never raises, runs each property under a time and memory budget, and proves `smooth` (and
the properties resting on continuity) only where the value and the derivative are continuous at every kink.
Truths here are hand-written numbers (the limits at a kink), never lossc's printers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lossc
from lossc.check import cache
from lossc.check.elementwise import Elementwise
from lossc.check.verdict import PROPERTIES, VERDICTS

os.environ.setdefault("LOSSC_NO_CACHE", "1")
ROOT = Path(__file__).resolve().parents[1]

JUMP_MARGIN = "loss jump_margin() over margin:\n    return where(m <= 0, 1 - m, 2 - m)\n"
JUMP_REGRESSION = "loss jump_reg() over regression:\n    return where(abs(r) < 1, r^2, r^2 + 1)\n"
POINT_JUMP = "loss point_jump() over margin:\n    return where(m == 0, -1, pos(1 - m)^2)\n"
SQRT_HINGE = "loss sqrt_hinge() over margin:\n    return sqrt(pos(1 - m))\n"
SQRT_ABS = "loss sqrt_abs() over regression:\n    return abs(r)^0.5\n"
ASL = '''loss asl(gamma_pos = 0.0, gamma_neg = 4.0, clip = 0.05) over binary:
    where gamma_pos >= 0
    where gamma_neg >= 0
    where 0 <= clip < 1
    p = sigmoid(f)
    p_m = pos(p - clip)
    return -y * (1 - p)^gamma_pos * log(p) - (1 - y) * p_m^gamma_neg * log(1 - p_m)
'''


def _check(src, **kw):
    cache.clear_memory()
    return lossc.check(src, use_cache=False, **kw)


def _complete(report):
    assert list(report.keys()) == list(PROPERTIES)
    assert all(v.verdict in VERDICTS for v in report.values())


@pytest.mark.parametrize("src, kink, left, right", [
    (JUMP_MARGIN, 0.0, lambda x: 1 - x, lambda x: 2 - x),
    (JUMP_REGRESSION, 1.0, lambda r: r * r, lambda r: r * r + 1),
])
def test_value_jump_with_matching_slopes_is_not_smooth(src, kink, left, right):
    report = _check(src)
    v = report["smooth"]
    assert v.verdict == "refuted", v.evidence
    assert "value jumps" in v.evidence
    # the jump, from the formula as written: the two sides differ by 1 at the kink
    assert abs(abs(left(kink) - right(kink)) - 1.0) < 1e-12
    ce = v.counterexample
    lo, hi = ce["L"][0], ce["L"][2]
    assert abs(abs(hi - lo) - 1.0) < 1e-6  # the generated code shows the same jump across the kink
    assert report["convex"].verdict != "proved"


def test_jump_at_one_point_is_a_kink():
    """where(m == 0, -1, ...) equals pos(1 - m)^2 on both sides of 0: the pieces must not merge over the point."""
    report = _check(POINT_JUMP)
    assert report["nonnegative"].verdict == "refuted"  # L(0) = -1
    assert report["smooth"].verdict == "refuted"
    assert report["convex"].verdict != "proved"
    assert report["monotone"].verdict != "proved"


@pytest.mark.parametrize("src", [SQRT_HINGE, SQRT_ABS])
def test_infinite_slope_at_a_kink_is_refuted_not_raised(src):
    report = _check(src)
    _complete(report)
    v = report["smooth"]
    assert v.verdict == "refuted", v.evidence
    assert "-> -oo" in v.evidence or "-> oo" in v.evidence
    ratios = v.counterexample["ratios"]
    assert ratios[-1] > 100 * ratios[0]  # the gradient's difference quotients grow toward the kink
    assert report["nonnegative"].verdict == "proved"  # the other verdicts are still decided


def test_an_exception_in_one_property_is_unknown_with_its_reason(monkeypatch):
    def broken(self):
        raise ZeroDivisionError("boom in convex")
    monkeypatch.setattr(Elementwise, "convex", broken)
    report = _check("hinge")
    _complete(report)
    assert report["convex"].verdict == "unknown"
    assert "ZeroDivisionError: boom in convex" in report["convex"].evidence
    assert report["nonnegative"].verdict == "proved"
    assert report["smooth"].verdict == "refuted"


def test_a_failing_setup_makes_every_property_unknown(monkeypatch):
    def broken(self, ctx):
        raise KeyError("no cases")
    monkeypatch.setattr(Elementwise, "__init__", broken)
    report = _check("hinge")
    _complete(report)
    assert all(v.verdict == "unknown" and "KeyError" in v.evidence for v in report.values())


def test_a_hanging_property_times_out_and_the_rest_is_reported(monkeypatch):
    import time

    def hang(self):
        while True:
            time.sleep(0.05)
    monkeypatch.setattr(Elementwise, "monotone", hang)
    report = _check("hinge", timeout=5)
    _complete(report)
    assert report["monotone"].evidence.startswith("unknown (timed out)")
    assert report["nonnegative"].verdict in ("proved", "unknown")
    assert report["calibrated"].verdict != "n/a"


def test_a_property_past_its_memory_budget_is_unknown(monkeypatch):
    def greedy(self):
        return bytearray(64 * 2**30)  # 64 GiB
    monkeypatch.setattr(Elementwise, "bounded", greedy)
    report = _check("hinge", memory_mb=512)
    _complete(report)
    assert report["bounded"].evidence.startswith("unknown (memory budget exceeded)"), report["bounded"].evidence
    assert report["convex"].verdict == "proved"  # (after the fresh worker)
    assert report["smooth"].verdict == "refuted"


def test_a_worker_that_dies_leaves_the_other_properties(monkeypatch):
    def crash(self):
        os._exit(3)
    monkeypatch.setattr(Elementwise, "symmetric", crash)
    report = _check("hinge")
    _complete(report)
    assert report["symmetric"].verdict == "unknown" and "died" in report["symmetric"].evidence
    assert report["convex"].verdict == "proved"


def test_tiny_budget_times_out_but_reports_every_property_and_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("LOSSC_NO_CACHE", raising=False)
    cache.clear_memory()
    report = lossc.check("logistic", timeout=0.001)
    _complete(report)
    assert any(v.evidence.startswith("unknown (timed out)") for v in report.values())
    cache.clear_memory()
    again = lossc.check("logistic")  # not served from a cache of the timed-out report
    assert again["convex"].verdict == "proved"


@pytest.mark.parametrize("bad", [0, -1, "10", True])
def test_budget_arguments_are_checked(bad):
    with pytest.raises(lossc.LossError):
        lossc.check("hinge", timeout=bad)


def test_cli_timeout_flag():
    out = subprocess.run([sys.executable, "-m", "lossc.cli", "check", "logistic", "--timeout", "0.001", "--json"],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "LOSSC_NO_CACHE": "1"})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert list(data["properties"]) == list(PROPERTIES)
    assert any(p["evidence"].startswith("unknown (timed out)") for p in data["properties"].values())
    bad = subprocess.run([sys.executable, "-m", "lossc.cli", "check", "logistic", "--timeout", "-2"],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "LOSSC_NO_CACHE": "1"})
    assert bad.returncode == 2 and "timeout" in bad.stderr


def test_asl_with_a_clip_finishes():
    """ASL with clip 0.05 used to run past 5 minutes and 14 GB in sympy's continuous_domain and a double
    simplify; a generous per-property guard (not a speed assertion) shows it no longer hangs."""
    report = _check(ASL, timeout=300)
    _complete(report)
    assert not any(v.evidence.startswith("unknown (") for v in report.values()), \
        {k: v.reason for k, v in report.items()}
    assert report["bounded"].verdict == "refuted"  # -log(p) for y = 1 as f -> -oo


MC_STEP = "loss mc_step() over multiclass:\n    return where(p_t < 0.5, 1 - p_t, 2 - p_t)\n"
MC_CE_STEP = "loss mc_ce_step() over multiclass:\n    return -log(p_t) + where(p_t < 0.5, 0, 1)\n"


def test_multiclass_jump_in_p_t_is_not_monotone_or_smooth():
    # L jumps up from 1.5 to 1.5 + 1 as p_t crosses 1/2: not non-increasing in p_t, not differentiable
    report = _check(MC_STEP, timeout=60)
    _complete(report)
    for prop in ("monotone", "smooth"):
        assert report[prop].verdict != "proved", report[prop].evidence


def test_multiclass_jump_breaks_the_separable_properness_proof():
    """-log p_t + [p_t >= 1/2]: differentiating branch by branch says p = q is stationary, but with q =
    (0.55, 0.45) the prediction p = (0.49, 0.51) has a lower risk (hand computation below)."""
    import math

    def risk(p, q):
        return sum(qj * (-math.log(pj) + (1.0 if pj >= 0.5 else 0.0)) for pj, qj in zip(p, q))
    q = (0.55, 0.45)
    assert risk((0.49, 0.51), q) < risk(q, q) - 0.05
    report = _check(MC_CE_STEP, timeout=60)
    _complete(report)
    for prop in ("proper", "calibrated", "monotone", "smooth"):
        assert report[prop].verdict != "proved", report[prop].evidence


def test_without_fork_the_budget_and_the_failures_hold_in_process(monkeypatch):
    """Where os.fork is missing (Windows) the properties run in this process under a SIGALRM deadline."""
    import time

    def hang(self):
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            sum(range(1000))

    def broken(self):
        raise RuntimeError("boom")
    monkeypatch.delattr(os, "fork")
    monkeypatch.setattr(Elementwise, "monotone", hang)
    monkeypatch.setattr(Elementwise, "symmetric", broken)
    report = _check("hinge", timeout=3)
    _complete(report)
    assert report["monotone"].evidence.startswith("unknown (timed out)")
    assert "RuntimeError: boom" in report["symmetric"].evidence
    assert report["convex"].verdict == "proved"


def test_the_ladder_climbs_past_what_a_proof_cannot_follow_and_a_form_without_a_ladder_is_na():
    """lossc/check/ladder.py: a proof rung raising Undecided decides nothing, the first verdict wins, the
    otherwise-step runs only when no rung decides; a property whose file states no ladder for the loss's
    form is n/a; a verdict one property reuses is computed once (the memo)."""
    from lossc.check import ladder
    from lossc.check.onevar import Undecided
    from lossc.check.verdict import plausible, proved

    calls = []

    def cannot():
        calls.append("cannot")
        raise Undecided("sympy gave up")

    def nothing():
        calls.append("nothing")
        return None

    def proves():
        calls.append("proves")
        return proved("by hand")
    v = ladder.climb(ladder.proof(cannot), nothing, proves, lambda: calls.append("late"),
                     otherwise=lambda: plausible("unused"))
    assert v.verdict == "proved" and calls == ["cannot", "nothing", "proves"]
    assert ladder.climb(nothing, otherwise=lambda: plausible("searched")).verdict == "plausible"
    with pytest.raises(ZeroDivisionError):  # only a proof rung swallows, and only what sympy cannot follow
        ladder.climb(ladder.proof(lambda: 1 / 0), otherwise=lambda: plausible("unused"))
    assert ladder.recheck(lambda: -1.0, lambda x: x < 0) == -1.0 and ladder.recheck(lambda: 1.0, lambda x: x < 0) is None

    class Spec:
        form, kind = "nowhere", "imaginary"

    class Ctx:
        spec = Spec()

        def setting(self):
            return "(no parameters)"
    checker = ladder.Checker(Ctx())
    assert checker.convex().verdict == "n/a" and "imaginary" in checker.convex().evidence
    checker._memo["monotone"] = proved("seeded")
    assert checker.monotone().evidence == "seeded"

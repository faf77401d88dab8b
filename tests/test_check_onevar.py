"""The one-variable engine, interval arithmetic, the cache and the API's edges."""

import os

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import lossc
from lossc.atoms import pos, sigmoid, softplus
from lossc.check import cache
from lossc.check.interval import enclose_on
from lossc.check.onevar import Undecided, compare, kink_report, pieces_of, prove_sign

os.environ.setdefault("LOSSC_NO_CACHE", "1")
x = sympy.Symbol("x", real=True)
p = sympy.Symbol("p", positive=True)


def test_pieces_of_huber():
    e = sympy.Piecewise((x ** 2 / 2, 1 > sympy.Abs(x)), (sympy.Abs(x) - sympy.Rational(1, 2), True))
    P = pieces_of(e, x)
    assert [float(k) for k in P.kinks] == [-1.0, 1.0]  # the kink of |x| at 0 merges: same piece both sides
    for k, value, lv, rv, ls, rs in kink_report(P):
        assert compare(lv, rv) == 0 and compare(ls, rs) == 0


def test_concave_kink_is_caught_where_sympy_is_convex_is_wrong():
    from sympy.calculus.util import is_convex
    e = sympy.Min(1, 1 - x)
    assert is_convex(e.rewrite(sympy.Piecewise), x)  # sympy's answer: wrong at the kink
    (k, value, lv, rv, ls, rs), = kink_report(pieces_of(e, x))
    assert k == 0 and compare(ls, rs) > 0  # slope drops from 0 to -1: not convex


def test_hinge_pieces():
    P = pieces_of(pos(1 - x), x)
    assert P.kinks == (1,)
    assert [sympy.simplify(q.expr) for q in P.pieces] == [1 - x, 0]


def test_undecided_kinks_raise():
    with pytest.raises(Undecided):
        pieces_of(pos(sympy.sin(x) - sympy.Rational(1, 2)), x)


def test_prove_sign():
    assert prove_sign(sympy.exp(-x), x, -sympy.oo, sympy.oo, "nonneg")
    assert prove_sign(sigmoid(x) * sigmoid(-x), x, -sympy.oo, sympy.oo, "nonneg")
    assert prove_sign(-(1 - p) ** 2 * sympy.log(p), p, 0, 1, "nonneg")
    assert prove_sign(x, x, -sympy.oo, sympy.oo, "nonneg") is None
    assert prove_sign(sympy.sin(x), x, -sympy.oo, sympy.oo, "nonneg") is None


EXPRS = [sympy.exp(-x) * x, softplus(x) - x, sigmoid(x) ** 2 - x / 3, (x - 1) ** 3 / (1 + x ** 2),
         sympy.sqrt(1 + x ** 2) * sympy.log(1 + x ** 2), pos(1 - x) ** 2 - sympy.Abs(x)]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, len(EXPRS) - 1), st.floats(-20, 20), st.floats(0, 20))
def test_interval_enclosures_contain_the_values(i, a, w):
    e = EXPRS[i]
    lo, hi = sympy.Rational(a), sympy.Rational(a) + sympy.Rational(w)
    box = enclose_on(e, x, lo, hi, pieces=4)
    from lossc.check.onevar import elementary
    f = lambda t: sympy.N(elementary(e).subs(x, sympy.Float(t, 30)), 30)  # noqa: E731
    for t in np.linspace(float(lo), float(hi), 9):
        v = float(f(t))
        assert float(box.lo) - 1e-12 <= v <= float(box.hi) + 1e-12


def test_an_enclosure_of_tanh():
    # mpmath's iv has no tanh: enclosing one raised AttributeError (the gradient pass's _lower_bound of a
    # base holding tanh, 2 + tanh(m), crashed the compile)
    box = enclose_on(sympy.tanh(x) - x / 4, x, sympy.Rational(-3), sympy.Rational(5), pieces=4)
    for t in np.linspace(-3, 5, 9):
        assert float(box.lo) - 1e-12 <= np.tanh(t) - t / 4 <= float(box.hi) + 1e-12


def test_exact_parameters_are_rationals():
    from lossc.check.context import exact
    assert exact(0.1) == sympy.Rational(1, 10) and exact(2) == 2


def test_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.delenv("LOSSC_NO_CACHE", raising=False)
    monkeypatch.setenv("LOSSC_CACHE_DIR", str(tmp_path))
    cache.clear_memory()
    first = lossc.check("exponential")
    assert list((tmp_path / "check").glob("*.json"))
    cache.clear_memory()
    again = lossc.check("exponential")
    assert again.as_dict() == first.as_dict()
    cache.clear_memory()


def test_report_mapping_api():
    r = lossc.check("mse")
    assert r["convex"].verdict == "proved" and "convex" in r and len(r) == 9
    assert r.as_dict()["kind"] == "regression"
    assert r["calibrated"].verdict == "n/a"


def test_check_rejects_bad_parameters():
    with pytest.raises(lossc.LossError):
        lossc.check("focal", gamma=-1.0)
    with pytest.raises(lossc.LossError):
        lossc.check("focal", beta=1.0)


def test_deterministic():
    from lossc.check import check
    a = check("focal", gamma=1.5, use_cache=False).as_dict()
    b = check("focal", gamma=1.5, use_cache=False).as_dict()
    assert a == b


def test_convexity_of_losses_of_p_t_alone_matches_the_hessian_bound():
    # L = g(p_t), g' <= 0: convex iff kappa = g'(1 - 2p)/(1 - p) + p g'' >= 0; Poly-1 has kappa = 2 eps p/(1 - p) + ...
    assert lossc.check("poly1", eps=1.0)["convex"].verdict == "proved"
    assert lossc.check("poly1", eps=-1.0)["convex"].verdict == "proved"
    assert lossc.check("poly1", eps=1.5)["convex"].verdict == "refuted"


def test_nonnegative_through_row_ranges():
    v = lossc.check("squentropy")["nonnegative"]
    assert v.verdict == "proved" and "d = z[y] - lse(z) <= 0" in v.evidence

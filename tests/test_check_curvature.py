"""The convexity prover: fixture pairs (expression -> curvature) and the atom table, one rule at a time."""

import os
from pathlib import Path

import pytest
import sympy

import lossc
from lossc.check.curvature import (AFFINE, ANY, ATOMS, CONCAVE, CONSTANT, CONVEX, DECR, INCR, NEG, NONE, NONNEG,
                                   POS, UNKNOWN, Analyzer, Curvature, affine, analyze, constant_sign, row_leaves)
from lossc.ir import LSE, NUM_CLASSES, Z_Y

os.environ.setdefault("LOSSC_NO_CACHE", "1")
FIXTURES = Path(__file__).parent / "fixtures" / "curvature.txt"


def fixture_pairs():
    for number, line in enumerate(FIXTURES.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        left, expected = line.rsplit("->", 1)
        kind, expr = left.split("|", 1)
        yield pytest.param(kind.strip(), expr.strip(), expected.strip(), id=f"{number}:{expr.strip()}")


def curvature_of(kind: str, text: str) -> Curvature:
    spec = lossc.parse(text, over=kind)
    if kind == "multiclass":
        return analyze(spec.expr, row_leaves(spec.reductions))
    x = spec.features[0][0] if spec.features and spec.expr.free_symbols <= {spec.features[0][0]} else None
    assert x is not None, "elementwise fixtures are written in m or r alone"
    return analyze(spec.expr, {x: affine(str(x), "the variable")})


@pytest.mark.parametrize("kind, expr, expected", list(fixture_pairs()))
def test_curvature_fixture(kind, expr, expected):
    result = curvature_of(kind, expr)
    assert result.curvature == expected, result.proof()
    if expected in (CONVEX, CONCAVE):
        assert result.proof().splitlines()[-1].split(":")[1].strip().startswith(expected), result.proof()


def test_fixture_file_covers_the_issue_list():
    text = FIXTURES.read_text()
    for needle in ("logsumexp(z) - z[y]", "max(z[j] for j != y)", "softplus(-m)", "pos(1 - m)^2", "exp(-m)",
                   "sqrt(1 + r^2)", "abs(r)", "r^2"):
        assert needle in text


# ----------------------------------------------------------------------------- the atom table

@pytest.mark.parametrize("name, curvature, monotone", [
    ("exp", CONVEX, INCR), ("softplus", CONVEX, INCR), ("pos", CONVEX, INCR), ("max", CONVEX, INCR),
    ("logsumexp", CONVEX, INCR), ("log", CONCAVE, INCR), ("min", CONCAVE, INCR), ("sqrt", CONCAVE, INCR),
    ("log1p", CONCAVE, INCR), ("expm1", CONVEX, INCR), ("power<0", CONVEX, DECR), ("sum", AFFINE, INCR),
])
def test_atom_facts(name, curvature, monotone):
    atom = ATOMS[name]
    assert atom.curvature == curvature
    assert atom.monotonicity(ANY) == monotone


def test_abs_and_even_powers_are_monotone_by_the_sign_of_their_argument():
    for name in ("abs", "square"):
        atom = ATOMS[name]
        assert atom.monotonicity(NONNEG) == INCR
        assert atom.monotonicity(NEG) == DECR
        assert atom.monotonicity(ANY) == NONE


def test_sigmoid_has_no_curvature_and_domains_are_enforced():
    assert ATOMS["sigmoid"].curvature == UNKNOWN
    assert ATOMS["log"].needs == POS
    assert ATOMS["power<0"].needs == POS


x = sympy.Symbol("x", real=True)
LEAVES = {x: affine("x", "the variable")}


def cur(e):
    return Analyzer(dict(LEAVES))(e).curvature


def test_rule_convex_increasing_of_convex_is_convex():
    assert cur(sympy.exp(sympy.exp(x))) == CONVEX


def test_rule_convex_increasing_of_concave_is_not_proved():
    assert cur(sympy.exp(-sympy.exp(x))) == UNKNOWN


def test_rule_convex_decreasing_of_concave_is_convex():
    from lossc.atoms import pos
    assert cur(1 / (1 + pos(-x)) ** -1) == CONVEX  # (1 + pos(-x))^1
    assert cur(sympy.exp(-sympy.log(1 + sympy.exp(x)))) == UNKNOWN  # exp of concave: no rule
    assert cur(-sympy.log(-x ** 2 + 4)) == UNKNOWN  # -x^2 + 4 may be negative: the domain is not proved
    assert cur(sympy.Max(-sympy.Min(x, 1), 0)) == CONVEX  # max of (-concave) and a constant


def test_rule_scaling_by_negative_flips_curvature():
    assert cur(-sympy.exp(x)) == CONCAVE
    assert cur(-(-sympy.exp(x))) == CONVEX


def test_rule_sums():
    assert cur(sympy.exp(x) + x ** 2 + 3 * x) == CONVEX
    assert cur(sympy.exp(x) - x ** 2) == UNKNOWN


def test_rule_even_power_of_nonnegative_convex():
    from lossc.atoms import pos
    assert cur(pos(x) ** 2) == CONVEX
    assert cur(pos(x - 1) ** 2) == CONVEX
    assert cur((sympy.exp(x) - 5) ** 2) == UNKNOWN  # sign unknown: x^2 not monotone there


def test_rule_products_of_nonconstants_are_not_proved():
    assert cur(x * sympy.exp(x)) == UNKNOWN


def test_norm_pattern():
    assert cur(sympy.sqrt(1 + x ** 2)) == CONVEX
    assert cur(sympy.sqrt(2 + 3 * (x - 1) ** 2)) == CONVEX
    assert cur(sympy.sqrt(-1 + x ** 2)) == UNKNOWN


def test_constant_sign_knows_the_number_of_classes_is_at_least_two():
    assert constant_sign(NUM_CLASSES - 1) == POS
    assert constant_sign(1 / (NUM_CLASSES - 1)) == POS
    assert constant_sign(1 - NUM_CLASSES) == NEG
    assert constant_sign(sympy.Symbol("t", real=True)) == ANY


def test_row_leaves():
    leaves = row_leaves(())
    assert leaves[LSE].curvature == CONVEX
    assert leaves[Z_Y].curvature == AFFINE
    assert Analyzer(leaves)(LSE - Z_Y).curvature == CONVEX
    assert Analyzer(leaves)(sympy.exp(Z_Y - LSE)).curvature == UNKNOWN  # p_t: neither


def test_constant_curvature():
    assert Analyzer({})(sympy.Integer(3)).curvature == CONSTANT


@pytest.mark.parametrize("source,proved", [
    ("loss a() over multiclass:\n    return log(sum(exp(z[j] - z[y]) for j))\n", True),
    ("loss c(s = 30.0, m = 0.35) over multiclass:\n    return log(sum(exp(s * (z[j] - m * (j == y))) for j)) - s * (z[y] - m)\n", True),
    ("loss e() over multiclass:\n    return log(1 + sum(exp(z[j] - z[y]) for j != y))\n", True),
    ("loss d() over multiclass:\n    return log(sum(exp(z[j]^2) for j))\n", False),        # (exp of a non-affine term)
    # (written with a negative c: not recognised, though it is a positive sum, sum over j != y plus exp(z[y]) / 2)
    ("loss g() over multiclass:\n    return log(sum(exp(z[j]) for j) - exp(z[y]) / 2)\n", False),
])
def test_log_of_a_sum_of_exponentials_of_affine_terms_is_convex(source, proved):
    """CosFace and cross-entropy as a log of a class sum: the logsumexp rule (check/curvature.py)."""
    report = lossc.check(lossc.parse(source), use_cache=False)
    assert (report["convex"].verdict == "proved") is proved, report["convex"]

"""The function table (lossc/functions.py) walked entry by entry: every function of the language against its
torch function (value and gradient, on every backend), and every entry's facts (interval enclosure, sign,
monotonicity, curvature) against sampled values."""

from __future__ import annotations

import functools
import importlib.util

import mpmath
import pytest
import sympy
import torch

import lossc
from lossc import functions
from lossc.check.curvature import Curvature, analyze
from lossc.check.interval import Interval, enclose

EXTRA_ARGS = {1: "", 2: ", 0.5", 3: ", -0.5, 0.5"}  # the other arguments of min/max and clamp
EXTRA_VALUES = {1: (), 2: (0.5,), 3: (-0.5, 0.5)}
BACKENDS = ["reference", "torch"] + (["triton"] if importlib.util.find_spec("triton") else [])


def _torch_function(dotted: str):
    return functools.reduce(getattr, dotted.split(".")[1:], torch)


def _samples(entry: functions.Function, n: int = 64) -> torch.Tensor:
    lo, hi = entry.sample
    x = torch.linspace(lo, hi, n, dtype=torch.float64)
    return x + 1e-3 * (hi - lo) / n  # off the kinks at 0 and +-0.5


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("entry", list(functions.LANGUAGE.values()), ids=lambda e: e.name)
def test_every_function_matches_torch(entry, backend):
    source = f"loss fn_{entry.name}() over regression:\n    return {entry.name}(yhat{EXTRA_ARGS[entry.arity]})\n"
    dtype = torch.float32 if backend == "triton" else torch.float64
    x = _samples(entry).to(dtype).requires_grad_(True)
    y = torch.zeros_like(x)
    module = lossc.loss(source, backend=backend, reduction="none")
    value = module(x, y)
    (grad,) = torch.autograd.grad(value, x, torch.full_like(value, 0.37))
    xr = x.detach().double().requires_grad_(True)
    want = _torch_function(entry.reference)(xr, *[torch.full_like(xr, v) for v in EXTRA_VALUES[entry.arity]])
    want_grad = (torch.autograd.grad(want, xr, torch.full_like(want, 0.37))[0] if want.requires_grad
                 else torch.zeros_like(xr))  # (detach: no gradient)
    tol = {} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-6}
    torch.testing.assert_close(value.double(), want.detach(), **tol)
    torch.testing.assert_close(grad.double(), want_grad, **tol)


def _has_interval(entry) -> bool:
    return entry.interval is not None and entry.node is not None


@pytest.mark.parametrize("entry", [e for e in functions.ENTRIES if _has_interval(e)], ids=lambda e: e.name)
def test_every_enclosure_holds_the_values(entry):
    xs = [sympy.Symbol(f"x{i}", real=True) for i in range(entry.arity)]
    expr = entry.node(*xs)
    if not isinstance(expr, entry.node):
        pytest.skip("sympy evaluates it on symbols")
    lo, hi = entry.sample
    points = [lo + (hi - lo) * k / 16 for k in range(17)]
    for a, b in zip(points, points[3:]):
        box = {x: Interval(mpmath.mpf(a) - 0.1 * i, mpmath.mpf(b)) for i, x in enumerate(xs)}
        got = enclose(expr, box)
        for t in range(9):
            at = {x: sympy.Float(box[x].lo + (box[x].hi - box[x].lo) * t / 8, 30) for x in xs}
            v = sympy.N(expr.xreplace(at), 30)
            if isinstance(v, sympy.Number):  # (an atom sympy cannot evaluate is left out)
                slack = mpmath.mpf(10) ** -27 * (1 + abs(mpmath.mpf(v)))  # v has 30 digits; an enclosure
                # computed at a higher working precision (another test's mp.dps) may be tighter than that
                assert got.lo - slack <= mpmath.mpf(v) <= got.hi + slack, (entry.name, box, at, v, got)


def _facts_sample(entry):
    lo, hi = entry.sample
    return [lo + (hi - lo) * k / 40 + 1e-3 for k in range(41)]


@pytest.mark.parametrize("entry", [e for e in functions.LANGUAGE.values() if e.curvature is not None and e.arity == 1],
                         ids=lambda e: e.name)
def test_every_curvature_fact_holds_on_samples(entry):
    f = _torch_function(entry.reference)
    x = torch.tensor(_facts_sample(entry), dtype=torch.float64)
    v = f(x)
    h = 1e-3
    second = f(x + h) - 2 * v + f(x - h)
    slack = 1e-9 * (1 + v.abs())
    if entry.curvature == functions.CONVEX:
        assert (second >= -slack).all(), entry.name
    if entry.curvature == functions.CONCAVE:
        assert (second <= slack).all(), entry.name
    if entry.sign == functions.POS:
        assert (v > 0).all(), entry.name
    if entry.sign == functions.NONNEG:
        assert (v >= 0).all(), entry.name
    if entry.shape == "increasing":
        assert (v[1:] >= v[:-1]).all(), entry.name
    if entry.shape == "even":
        assert torch.equal(f(-x), v), entry.name


def test_the_curvature_rule_reads_the_table():
    """Every DCP fact of the table reaches the composition rule."""
    x = sympy.Symbol("x", real=True)
    for entry in functions.LANGUAGE.values():
        if entry.curvature is None or entry.node is None or entry.arity != 1:
            continue
        sign = "positive" if entry.needs else "any sign"  # (an argument in the function's domain)
        got = analyze(entry.node(x), {x: Curvature("affine", sign)})
        assert got.curvature == entry.curvature, (entry.name, got)  # (of an affine argument: its own)


def test_a_new_function_is_one_entry():
    """erf came in as one entry of the table (lossc/functions.py) and nothing else: the language builds it,
    both printers print it, the checker reads its facts; its value and gradient on every backend are tested
    with every other entry above."""
    spec = lossc.parse("loss e() over margin:\n    return 1 - erf(m)\n")
    assert spec.expr.has(sympy.erf)
    assert "torch.erf(" in lossc.generate(spec, "torch")
    assert "tl.erf(" in lossc.generate(spec, "triton")
    report = lossc.check(spec, use_cache=False)
    assert report["nonnegative"].verdict in ("proved", "plausible"), report["nonnegative"]  # 1 - erf in (0, 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_acos_gradient_near_plus_minus_one(backend):
    """d/dx acos(x) = -1 / sqrt((1 - x)(1 + x)): 1 - x^2 would cancel in float32 next to +-1 (at x = 1 - 2^-20
    it is 2^-19 - 2^-40, which float32 rounds; the factors are exact)."""
    source = "loss arc() over regression:\n    return acos(yhat)\n"
    x = torch.tensor([1 - 2.0 ** -20, -(1 - 2.0 ** -20), 1 - 2.0 ** -12, 0.5], dtype=torch.float32, requires_grad=True)
    module = lossc.loss(source, backend=backend, reduction="sum")
    (grad,) = torch.autograd.grad(module(x, torch.zeros_like(x)), x)
    xd = x.detach().double()
    want = -1 / torch.sqrt((1 - xd) * (1 + xd))
    torch.testing.assert_close(grad.double(), want, rtol=1e-6, atol=0)


def test_the_new_functions_reach_the_checker():
    """sin, cos, atan, acos, sinh, cosh: the checker reads their facts (a margin loss of the ArcFace kind,
    cos of an angle: bounded by [-1, 1] whatever the angle)."""
    spec = lossc.parse("loss arcface_like(s = 0.5) over margin:\n    return 1 - cos(acos(tanh(m)) + s)\n")
    report = lossc.check(spec, use_cache=False)
    assert report["bounded"].verdict in ("proved", "plausible"), report["bounded"]
    assert report["nonnegative"].verdict in ("proved", "plausible"), report["nonnegative"]
    cosh = lossc.check(lossc.parse("loss c() over regression:\n    return cosh(r) - 1\n"), use_cache=False)
    assert cosh["convex"].verdict == "proved", cosh["convex"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_lgamma_of_parameters_and_of_the_prediction(backend):
    """Student-t's negative log-likelihood (lgamma of parameters alone: the scalar printer) and lgamma / digamma
    of the prediction, against torch.distributions and torch.lgamma."""
    source = ("loss student(nu = 3.0) over regression:\n"
              "    return (nu + 1) / 2 * log(1 + r^2 / nu) + 0.5 * log(nu) + lgamma(nu / 2) - lgamma((nu + 1) / 2)"
              " + 0.5 * log(3.141592653589793) + lgamma(1 + yhat^2) - digamma(2 + yhat^2)\n")
    dtype = torch.float32 if backend == "triton" else torch.float64
    x = torch.linspace(-3, 3, 13, dtype=dtype).requires_grad_()
    y = torch.linspace(-1, 2, 13, dtype=dtype)
    got = lossc.loss(source, backend=backend, reduction="none", nu=4.5)(x, y)
    xd = x.detach().double()
    t = torch.distributions.StudentT(torch.tensor(4.5, dtype=torch.float64), loc=xd)
    want = -t.log_prob(y.double()) + torch.lgamma(1 + xd ** 2) - torch.digamma(2 + xd ** 2)
    torch.testing.assert_close(got.double(), want, **({} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}))
    report = lossc.check(lossc.parse(source), use_cache=False)
    assert all(v.verdict in ("proved", "plausible", "refuted", "unknown", "n/a") for v in report.values())
    assert report["convex"].verdict == "refuted"  # (lgamma(1 + yhat^2) - digamma(2 + yhat^2) bends down at 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pi_is_a_named_constant_a_parameter_can_hide(backend):
    source = "loss q() over regression:\n    return max(r - pi, 0) + sin(pi * yhat) + cos(2 * pi * r) / pi\n"
    x = torch.tensor([-5.0, 0.5, 4.0], dtype=torch.float64 if backend != "triton" else torch.float32,
                     requires_grad=True)
    got = lossc.loss(source, backend=backend, reduction="none")(x, torch.zeros_like(x))
    xd, pi = x.detach().double(), torch.pi
    r = -xd  # (r = y - yhat)
    want = torch.clamp(r - pi, min=0) + torch.sin(pi * xd) + torch.cos(2 * pi * r) / pi
    torch.testing.assert_close(got.double(), want, **({} if backend != "triton" else {"rtol": 1e-5, "atol": 1e-5}))
    hidden = lossc.loss("loss q(pi = 2.0) over regression:\n    return r * pi\n", reduction="sum", backend=backend)
    assert float(hidden(torch.tensor([1.0]), torch.tensor([0.0]))) == -2.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_lgamma_and_digamma_of_constants(backend):
    """digamma((1 + softplus(1))) evaluated to sympy's polygamma(0, c), which no printer prints
    ("PrintMethodNotImplementedError ... polygamma"; found by the generator the evening the functions came in): a
    constant argument keeps the atom (exact values only at positive integers)."""
    import math
    source = ("loss c() over margin:\n    return m * digamma(1 + softplus(1)) + lgamma(2.5) + digamma(3) + lgamma(4)\n")
    x = torch.tensor([0.5, -2.0], dtype=torch.float64 if backend != "triton" else torch.float32, requires_grad=True)
    got = lossc.loss(source, backend=backend, reduction="none")(x, torch.ones_like(x))
    k = float(torch.special.digamma(torch.tensor(1 + math.log1p(math.e), dtype=torch.float64)))
    want = x.detach().double() * k + math.lgamma(2.5) + float(torch.special.digamma(torch.tensor(3.0,
                                                                                          dtype=torch.float64))) \
        + math.lgamma(4)
    torch.testing.assert_close(got.double(), want, **({} if backend != "triton" else {"rtol": 1e-5, "atol": 1e-5}))


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_digamma_gradient_to_float64_accuracy(backend):
    """digamma's derivative (trigamma) from lossc's own _trigamma, to 1e-14: torch.polygamma(1, .) and torch's
    backward of digamma are about 5e-10 off on the CPU (the generator's digamma(1 + f) missed the 1e-10 float64
    tolerance by that much)."""
    source = "loss d() over regression:\n    return digamma(1 + yhat^2)\n"
    x = torch.tensor([-3.0, -0.4, 0.05, 0.7, 2.2, 9.0], dtype=torch.float64, requires_grad=True)
    value = lossc.loss(source, backend=backend, reduction="sum")(x, torch.zeros_like(x))
    (grad,) = torch.autograd.grad(value, x)
    want = torch.tensor([float(mpmath.psi(1, 1 + mpmath.mpf(float(v)) ** 2) * 2 * mpmath.mpf(float(v)))
                         for v in x.detach()], dtype=torch.float64)
    torch.testing.assert_close(grad, want, rtol=1e-14, atol=1e-15)
